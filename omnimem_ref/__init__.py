"""omnimem-ref: a readable reference implementation of OmniMem.

OmniMem bounds the key/value memory of a streaming audio-visual LLM with three ideas:
modality-aware allocation, perturbation-aware selection and budget-aware fine-tuning.
Start with the README and the notebooks; each module holds one idea.
"""

__version__ = "0.1.0"
