import time, numpy as np, torch
torch.set_num_threads(1)
from omnimem_ref.training.batches import make_batch
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.training.train_tiny import new_model
tok = build_tokenizer(); spec = new_model(0, 120).config.feature_spec
rng = np.random.default_rng(0); make_batch(rng, tok, spec, 2, 40.0)
t = time.time()
for _ in range(3): make_batch(rng, tok, spec, 16, 40.0)
print((time.time() - t) / 3)
