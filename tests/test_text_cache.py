"""Every policy on a plain transformers text decoder's cache (tiny random Llama and Qwen2, built
here, nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from omnimem_ref.budget import parse_budget
from omnimem_ref.core import cache_argument
from omnimem_ref.errors import OmniMemError
from omnimem_ref.masks import attention_mask, chunk_visibility
from omnimem_ref.policies import POLICIES, compress_text_cache, make_policy

N_TOKENS = 48
SETTINGS = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


def build(kind: str):
    torch.manual_seed(0)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**SETTINGS)).eval()
    return Qwen2ForCausalLM(Qwen2Config(**SETTINGS)).eval()


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def decoder(request):
    return build(request.param)


def prefill(model, ids):
    cache = DynamicCache()
    with torch.no_grad():
        out = model(
            input_ids=ids.unsqueeze(0),
            **cache_argument(model, cache),
            use_cache=True,
            output_hidden_states=True,
        )
    return cache, out.hidden_states


def continue_greedily(model, cache, first_position: int, token: int, steps: int = 3) -> list[int]:
    """Greedy decoding on a gappy cache: explicit positions and an explicit mask."""
    produced = []
    for step in range(steps):
        n_cached = cache.get_seq_length()
        mask = attention_mask(chunk_visibility(n_cached, 1), model.config)
        with torch.no_grad():
            out = model(
                input_ids=torch.tensor([[token]]),
                attention_mask=mask,
                position_ids=torch.tensor([[first_position + step]]),
                **cache_argument(model, cache),
                use_cache=True,
            )
        token = int(out.logits[0, -1].argmax())
        produced.append(token)
    return produced


PROMPT_IDS = torch.tensor([5, 6, 7, 8])  # a "generic prompt" in the toy vocabulary


@pytest.mark.parametrize("name", [name for name in POLICIES if name != "full"])
@pytest.mark.parametrize("budget", ["12", "0.25"])
def test_every_policy_compresses_a_text_cache(decoder, name, budget):
    ids = torch.randint(0, 64, (N_TOKENS,), generator=torch.Generator().manual_seed(1))
    cache, hidden = prefill(decoder, ids)
    compressed, kept = compress_text_cache(
        decoder, cache, make_policy(name), budget, hidden_states=hidden, prompt_ids=PROMPT_IDS
    )
    tokens = parse_budget(budget).resolve(N_TOKENS)
    units = 2 * (decoder.config.num_key_value_heads if make_policy(name).head_wise else 1)
    assert kept.shape == (units, tokens)
    assert torch.all(kept[:, 1:] > kept[:, :-1]) and kept.min() >= 0 and kept.max() < N_TOKENS
    assert compressed.get_seq_length() == tokens
    for layer in compressed.layers:
        assert layer.keys.shape[-2] == tokens <= N_TOKENS
    assert len(continue_greedily(decoder, compressed, N_TOKENS, int(ids[-1]))) == 3


def test_recent_keeps_four_sinks_and_the_newest_tokens(decoder):
    ids = torch.arange(N_TOKENS) % 64
    cache, hidden = prefill(decoder, ids)
    _, kept = compress_text_cache(decoder, cache, make_policy("recent"), 12, hidden_states=hidden)
    expected = [0, 1, 2, 3, *range(N_TOKENS - 8, N_TOKENS)]
    assert kept.tolist() == [expected, expected]


def test_compressed_cache_equals_masking_the_evicted_tokens(decoder):
    """Decoding on the compressed cache == one full forward pass in which the new token cannot
    see the evicted ones (positions keep counting, so nothing else changes)."""
    ids = torch.randint(0, 64, (N_TOKENS,), generator=torch.Generator().manual_seed(2))
    cache, hidden = prefill(decoder, ids)
    compressed, kept = compress_text_cache(decoder, cache, make_policy("recent"), 16, hidden)
    new_token = 9
    mask = attention_mask(chunk_visibility(compressed.get_seq_length(), 1), decoder.config)
    with torch.no_grad():
        streamed = decoder(
            input_ids=torch.tensor([[new_token]]),
            attention_mask=mask,
            position_ids=torch.tensor([[N_TOKENS]]),
            **cache_argument(decoder, compressed),
        ).logits[0, -1]
        visible = torch.ones(N_TOKENS + 1, N_TOKENS + 1, dtype=torch.bool).tril()
        visible[N_TOKENS, :N_TOKENS] = False
        visible[N_TOKENS, kept[0]] = True
        full = decoder(
            input_ids=torch.cat([ids, torch.tensor([new_token])]).unsqueeze(0),
            attention_mask=attention_mask(visible, decoder.config),
            position_ids=torch.arange(N_TOKENS + 1).unsqueeze(0),
        ).logits[0, -1]
    assert torch.allclose(streamed, full, atol=1e-4)


def test_a_budget_above_the_cache_keeps_everything(decoder):
    cache, hidden = prefill(decoder, torch.arange(10))
    compressed, kept = compress_text_cache(decoder, cache, make_policy("omnimem"), 50, hidden)
    assert compressed.get_seq_length() == 10 and kept.shape == (2, 10)


def test_query_policies_explain_missing_inputs(decoder):
    cache, _ = prefill(decoder, torch.arange(N_TOKENS) % 64)
    with pytest.raises(OmniMemError, match="hidden_states"):
        compress_text_cache(decoder, cache, make_policy("snapkv"), 12)
    with pytest.raises(OmniMemError, match="prompt_ids"):
        compress_text_cache(decoder, cache, make_policy("streammem"), 12)
