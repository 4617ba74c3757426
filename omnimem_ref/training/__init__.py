"""Training TinyOmni on the synthetic world (and, later, budget-aware fine-tuning)."""
