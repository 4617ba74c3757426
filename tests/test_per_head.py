"""Head-wise selection (``policies.per_head``): one token set per key/value head.

What must hold: the cache really keeps each head's own rows and the backbone attends to them;
every scorer scores each head's rows by that head alone; OmniMem's head-wise score is the layer's
output change when a row leaves one head (brute force, float64); the fast paths equal the
definitions; per-token stores follow head-wise evictions; fine-tuning refuses head-wise memory.
"""

from __future__ import annotations

import copy

import pytest
import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.errors import OmniMemError
from omnimem_ref.policies import HEAD_WISE, PerHead, make_policy
from omnimem_ref.policies.attention import proxy_attention, visible_keys
from omnimem_ref.policies.knorm import KeyNorm, key_norm_scores
from omnimem_ref.policies.oracle import unit_output_change
from omnimem_ref.policies.perturbation import (
    leave_one_out_scores,
    projected_values,
    uniform_scores,
)
from omnimem_ref.policies.projection import output_projection
from omnimem_ref.policies.queries import ProxyQueries, chunk_tail
from omnimem_ref.policies.selection import content_keys
from omnimem_ref.policies.vnorm import value_norm_scores
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.training.finetune import FinetuneConfig, finetune
from tests.model_fixtures import HeadWiseRecorder, attention_outputs

KV_HEADS = 2  # tiny_model: 4 query heads, 2 key/value heads, 2 layers


def test_heads_of_one_layer_hold_different_rows(last_chunk_per_head):
    memory, _ = last_chunk_per_head
    assert memory.n_units == 2 * KV_HEADS
    positions = memory.meta.position
    assert not torch.equal(positions[0], positions[1]), "knorm per head chose differently"
    for layer in range(memory.n_layers):
        keys = memory.layer_keys(layer)
        assert keys.shape[0] == KV_HEADS and keys.shape[1] == len(memory)


def test_the_backbone_attends_to_each_heads_own_rows(model, tokenizer, stream):
    """After head-wise evictions, what the backbone computes for the last chunk equals our
    attention over each head's own rows at their own positions."""
    recorder = HeadWiseRecorder()
    with attention_outputs(model) as captured:
        StreamingSession(model, tokenizer, recorder, budget=113).stream(stream)
    memory, context = recorder.memory, recorder.context
    assert not torch.equal(memory.meta.position[0], memory.meta.position[1])
    for layer, proxy in enumerate(chunk_tail(context, 32)):
        _, output = proxy_attention(memory, layer, proxy)  # (heads, w, d)
        actual = captured[layer].view(output.shape[1], output.shape[0], -1).transpose(0, 1)
        assert torch.allclose(output, actual, atol=1e-5)


def test_keep_gathers_each_heads_rows_and_metadata(last_chunk_per_head):
    source, _ = last_chunk_per_head
    memory = copy.deepcopy(source)
    n = len(memory)
    # unit u keeps rows u, u + 5, u + 10, ... : a different set for every head
    kept = torch.stack([torch.arange(u, n, 5)[:20] for u in range(memory.n_units)])
    before_keys = [memory.layer_keys(layer).clone() for layer in range(memory.n_layers)]
    before_position = memory.meta.position.clone()
    memory.keep(kept)
    for unit in range(memory.n_units):
        layer, head = divmod(unit, KV_HEADS)
        assert torch.equal(memory.layer_keys(layer)[head], before_keys[layer][head, kept[unit]])
        assert torch.equal(memory.meta.position[unit], before_position[unit, kept[unit]])


def test_layer_wise_scores_are_the_head_wise_ones_averaged(last_chunk):
    """In a head-wise memory whose heads hold the same rows, knorm and vnorm per head average to
    the layer-wise scores (the relation the kvpress cross-check found)."""
    memory, _ = last_chunk
    same = KVMemory(memory.n_layers, KV_HEADS)
    same.cache = memory.cache
    same.meta = memory.meta.map(lambda x: x.repeat_interleave(KV_HEADS, dim=0))
    for scores in (key_norm_scores, value_norm_scores):
        per_head = scores(same).view(memory.n_layers, KV_HEADS, -1)
        assert torch.allclose(per_head.mean(1), scores(memory), atol=1e-6)
        assert not torch.allclose(per_head[:, 0], per_head[:, 1])


def test_knorm_per_head_keeps_each_heads_lowest_key_norms(last_chunk_per_head):
    memory, context = last_chunk_per_head
    budget = 9 + 30
    kept = make_policy("knorm-per-head").select(memory, budget, context)
    for unit in range(memory.n_units):
        layer, head = divmod(unit, KV_HEADS)
        norms = memory.layer_keys(layer)[head].float().norm(dim=-1)
        stream_rows = torch.arange(9, len(memory))
        lowest = stream_rows[norms[9:].argsort()[:30]].sort().values
        assert torch.equal(kept[unit, 9:], lowest)


@pytest.mark.parametrize("kind", ["tail", "uniform"])
def test_head_wise_score_is_the_output_change_when_one_head_loses_the_row(
    model, last_chunk_per_head, kind
):
    """Evict row i from one key/value head (its query group's attention only), recompute the
    layer output (float64): the head-wise OmniMem score is how far it moved."""
    memory, context = last_chunk_per_head
    n = len(memory)
    for layer, proxy in enumerate(chunk_tail(context, 32)):
        if kind == "uniform":  # no query: zero queries give every key a = 1/N
            proxy = ProxyQueries(torch.zeros_like(proxy.queries[:, :1]), proxy.positions[-1:])
        keys, vals, positions = visible_keys(memory, layer, proxy)
        w_o = output_projection(model.backbone, layer)
        brute = unit_output_change(
            proxy.queries, proxy.positions, keys, vals, positions, w_o, KV_HEADS, n
        )  # (units, q, n)
        score = leave_one_out_scores(memory, model.backbone, proxy, layer, "sum")
        assert score.shape == (KV_HEADS, n)
        assert torch.allclose(score.double(), brute.mean(1), rtol=1e-4, atol=1e-6)
        if kind == "uniform":
            fast = uniform_scores(memory, model.backbone)[memory.units_of(layer)]
            assert torch.allclose(fast, score, rtol=1e-4, atol=1e-7)


def test_head_wise_stores_follow_evictions(model, tokenizer, stream):
    session = StreamingSession(model, tokenizer, make_policy("omnimem-per-head"), budget=40)
    session.stream(stream)
    memory = session.memory
    assert not torch.equal(memory.meta.position[0], memory.meta.position[1])
    stored = projected_values(memory, model.backbone), content_keys(memory, model.backbone)
    fresh = KVMemory(memory.n_layers, memory.units_per_layer)
    fresh.cache, fresh.meta = memory.cache, memory.meta
    assert torch.allclose(stored[0], projected_values(fresh, model.backbone), atol=1e-6)
    assert torch.allclose(stored[1], content_keys(fresh, model.backbone), atol=1e-6)


def test_every_scored_policy_has_a_head_wise_form():
    for name, factory in HEAD_WISE.items():
        policy = factory()
        assert policy.head_wise and policy.name == name
        assert not make_policy(name.removesuffix("-per-head")).head_wise


def test_a_head_wise_policy_needs_a_head_wise_memory(last_chunk):
    memory, context = last_chunk
    with pytest.raises(ValueError, match="head-wise memory"):
        PerHead(KeyNorm()).select(memory, 20, context)


def test_fine_tuning_and_replay_refuse_head_wise_memory(model, tokenizer, stream, tmp_path):
    policy = make_policy("knorm-per-head")
    session = StreamingSession(model, tokenizer, policy, budget=60, record_history=True)
    session.stream(stream)
    with pytest.raises(OmniMemError, match="head-wise"):
        session.replay_visibility()
    with pytest.raises(OmniMemError, match="head-wise"):
        finetune(model, tokenizer, tmp_path / "out", FinetuneConfig(policy="snapkv-per-head"))
