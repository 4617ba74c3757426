"""Each baseline's defining rule, on hand-built memories and the tiny random TinyOmni.

Every test here fails if the rule it names is broken: the sign of a norm, the window's share of
the free slots, the first stage's size, the formula of a score, the tie rule.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from omnimem_ref.core import AUDIO, TEXT, VISUAL, KVMemory, TokenMeta
from omnimem_ref.policies import (
    POLICIES,
    ComposedPolicy,
    SnapKVScorer,
    TwoStage,
    force_keep,
    keep_top,
    make_policy,
)
from omnimem_ref.policies.base import BudgetAwareScorer, ChunkContext
from omnimem_ref.policies.criticalkv import CriticalKV, ProjectedValueNorm
from omnimem_ref.policies.infinipot_v import InfiniPotV, InfiniPotVScorer, recent_frames
from omnimem_ref.policies.projection import output_projection
from omnimem_ref.policies.queries import TEMPLATE_ONLY, chunk_tail, generic_prompt
from omnimem_ref.policies.random_choice import RandomEviction
from omnimem_ref.policies.recent import RecencyScorer, RecentWindow
from omnimem_ref.policies.selection import content_keys
from omnimem_ref.policies.snapkv import SnapKV
from omnimem_ref.policies.streammem import PromptAttentionScorer, StreamMem

PROMPT = 9  # TinyOmni's prompt prefix, always kept
NO_CONTEXT = ChunkContext(torch.nn.Module(), (), torch.tensor([0]))  # for scorers that need none


@pytest.fixture(autouse=True)
def no_grad():
    """Policies run under ``torch.no_grad()``, as the session calls them."""
    with torch.no_grad():
        yield


def hand_memory(
    keys: torch.Tensor,
    values: torch.Tensor | None = None,
    modality: torch.Tensor | None = None,
) -> KVMemory:
    """A memory of ``keys`` (layers, kv_heads, tokens, d), rows in stream order (position = row).
    Rows of modality TEXT are protected; the default is all VISUAL (nothing protected)."""
    n_layers, _, n, _ = keys.shape
    values = torch.ones_like(keys) if values is None else values
    modality = torch.full((n,), VISUAL) if modality is None else modality
    memory = KVMemory(n_layers)
    for layer in range(n_layers):
        memory.cache.update(keys[layer].unsqueeze(0), values[layer].unsqueeze(0), layer)
    memory.record(
        TokenMeta(
            modality=modality,
            seconds=torch.zeros(n),
            patch=torch.full((n,), -1),
            position=torch.arange(n),
        )
    )
    return memory


def scaled_rows(norms: list[float], n_layers: int = 2, heads: int = 2, d: int = 4) -> torch.Tensor:
    """(layers, heads, tokens, d) vectors whose L2 norm in every head is ``norms[i]``."""
    direction = F.normalize(torch.randn(n_layers, heads, len(norms), d), dim=-1)
    return direction * torch.tensor(norms).view(1, 1, -1, 1)


def kept_rows(kept: torch.Tensor) -> list[set[int]]:
    return [set(row.tolist()) for row in kept]


# The shared selection: keep_top, force_keep and the tie rule


def test_keep_top_breaks_ties_by_position_older_first():
    memory = hand_memory(torch.randn(2, 2, 12, 4))
    scores = torch.zeros(2, 12)
    assert keep_top(scores, 5, memory).tolist() == [[0, 1, 2, 3, 4]] * 2
    scores = torch.tensor([[0.0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0]] * 2)
    assert keep_top(scores, 3, memory).tolist() == [[1, 3, 4]] * 2, "the older of the tied 1s"
    # 100 tied rows and one better: the tie order of `topk` is unspecified, a stable sort's is not.
    memory = hand_memory(torch.randn(1, 1, 101, 2))
    scores = torch.zeros(1, 101)
    scores[0, 57] = 1.0
    assert keep_top(scores, 10, memory).tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 8, 57]]


def test_keep_top_always_keeps_protected_rows():
    modality = torch.tensor([TEXT, TEXT, VISUAL, VISUAL, VISUAL, AUDIO, TEXT, VISUAL])
    memory = hand_memory(torch.randn(2, 2, 8, 4), modality=modality)
    scores = torch.tensor([float("-inf"), -5.0, float("inf"), 3.0, 2.0, 1.0, -9.0, 0.0])
    kept = keep_top(scores.expand(2, -1), 5, memory)
    assert kept.tolist() == [[0, 1, 2, 3, 6]] * 2
    assert keep_top(scores.expand(2, -1), 8, memory).tolist() == [list(range(8))] * 2


def test_force_keep_lifts_rows_above_every_other_score():
    scores = torch.tensor([[3.0, -1.0, 1e9, 2.0, float("-inf")], [-4.0, -3.0, -2.0, -1.0, -0.5]])
    rows = torch.tensor([[False, True, False, False, True], [True, False, False, False, False]])
    lifted = force_keep(scores, rows)
    for layer in range(2):
        assert lifted[layer, rows[layer]].min() > scores[layer, ~rows[layer]].max()
        assert torch.equal(lifted[layer, ~rows[layer]], scores[layer, ~rows[layer]])
    memory = hand_memory(torch.randn(2, 2, 5, 4))
    assert kept_rows(keep_top(lifted, 2, memory)) == [{1, 4}, {0, 4}]


# Norm baselines


@pytest.mark.parametrize("seed", range(3))
def test_knorm_keeps_the_lowest_key_norms(seed):
    torch.manual_seed(seed)
    norms = torch.rand(20) * 10 + 0.1
    memory = hand_memory(scaled_rows(norms.tolist()))
    kept = make_policy("knorm").select(memory, 6, NO_CONTEXT)
    lowest = set(norms.argsort()[:6].tolist())
    assert kept_rows(kept) == [lowest, lowest]


@pytest.mark.parametrize("seed", range(3))
def test_vnorm_keeps_the_highest_value_norms(seed):
    torch.manual_seed(seed)
    norms = torch.rand(20) * 10 + 0.1
    memory = hand_memory(torch.randn(2, 2, 20, 4), values=scaled_rows(norms.tolist()))
    kept = make_policy("vnorm").select(memory, 6, NO_CONTEXT)
    highest = set(norms.argsort(descending=True)[:6].tolist())
    assert kept_rows(kept) == [highest, highest]


def test_norms_are_averaged_over_key_value_heads():
    """Head 0 says row 0 is smallest, head 1 says row 1 is; the mean decides."""
    keys = torch.zeros(1, 2, 3, 1)
    keys[0, 0, :, 0] = torch.tensor([1.0, 2.0, 3.0])
    keys[0, 1, :, 0] = torch.tensor([4.0, 0.5, 3.0])  # means: 2.5, 1.25, 3
    memory = hand_memory(keys, values=keys)
    assert make_policy("knorm").select(memory, 1, NO_CONTEXT).tolist() == [[1]]
    assert make_policy("vnorm").select(memory, 1, NO_CONTEXT).tolist() == [[2]]


# StreamingLLM


def test_recent_keeps_the_sinks_and_the_newest_tokens():
    memory = hand_memory(torch.randn(2, 2, 30, 4))  # nothing protected: a plain text cache
    kept = make_policy("recent").select(memory, 10, NO_CONTEXT)
    assert kept.tolist() == [[0, 1, 2, 3, *range(24, 30)]] * 2
    kept = RecentWindow(sinks=1).select(memory, 3, NO_CONTEXT)
    assert kept.tolist() == [[0, 28, 29]] * 2


def test_recent_in_a_stream_keeps_the_prompt_and_the_newest_tokens(last_chunk):
    memory, context = last_chunk
    kept = make_policy("recent").select(memory, 40, context)
    assert kept.tolist() == [[*range(PROMPT), *range(len(memory) - 31, len(memory))]] * 2


# Random


def test_random_is_seeded_and_uniform():
    modality = torch.tensor([TEXT, TEXT] + [VISUAL] * 20)
    memory = hand_memory(torch.randn(2, 2, 22, 4), modality=modality)
    first, again, other = RandomEviction(0), RandomEviction(0), RandomEviction(1)
    draws = [first.select(memory, 7, NO_CONTEXT) for _ in range(2000)]
    assert all(torch.equal(a, again.select(memory, 7, NO_CONTEXT)) for a in draws[:20])
    assert not all(torch.equal(a, other.select(memory, 7, NO_CONTEXT)) for a in draws[:20])
    assert not torch.equal(draws[0], draws[1]), "each compression draws fresh numbers"
    counts = torch.zeros(2, 22)
    for kept in draws:
        counts.scatter_add_(1, kept, torch.ones_like(kept, dtype=torch.float))
    assert torch.all(counts[:, :2] == 2000), "the prompt is always kept"
    frequency = counts[:, 2:] / 2000  # each evictable row survives with probability 5 / 20
    assert torch.allclose(frequency, torch.full_like(frequency, 0.25), atol=0.04)


# SnapKV


def hand_votes(memory: KVMemory, context: ChunkContext, window: int = 32) -> torch.Tensor:
    """(layers, tokens): mean attention of the window's queries over heads and queries, computed
    here from the queries with softmax(q k / sqrt(d)) and a causal mask by position."""
    rows = []
    for layer, proxy in enumerate(chunk_tail(context, window)):
        keys = memory.layer_keys(layer).float()
        queries = proxy.queries  # (heads, w, d)
        group = queries.shape[0] // keys.shape[0]
        keys = keys.repeat_interleave(group, dim=0)
        logits = queries @ keys.transpose(1, 2) / math.sqrt(queries.shape[-1])
        later = memory.meta.position[layer].view(1, -1) > proxy.positions.view(-1, 1)
        weights = logits.masked_fill(later, float("-inf")).softmax(dim=-1)
        rows.append(weights.mean(dim=(0, 1)))
    return torch.stack(rows)


def hand_pool(votes: torch.Tensor, kernel: int = 7) -> torch.Tensor:
    """Each row's mean over the ``kernel`` rows centred on it, zeros beyond the ends."""
    half = kernel // 2
    padded = F.pad(votes, (half, half))
    return torch.stack(
        [padded[:, i : i + kernel].sum(1) / kernel for i in range(votes.shape[1])], 1
    )


def test_snapkv_votes_are_pooled_mean_window_attention(last_chunk):
    memory, context = last_chunk
    w = len(context.positions)  # the chunk: 18 tokens, fewer than the window of 32
    votes = hand_votes(memory, context)
    expected = torch.cat([hand_pool(votes[:, :-w]), hand_pool(votes[:, -w:])], dim=1)
    budget = len(memory)  # free / 4 >= 18: the whole window is forced
    scores = SnapKVScorer(32, 7)(memory, context, budget)
    assert torch.allclose(scores[:, :-w], expected[:, :-w], atol=1e-6)
    budget = PROMPT + 1  # free / 4 < 1: nothing forced, every row scored by its votes
    assert torch.allclose(SnapKVScorer(32, 7)(memory, context, budget), expected, atol=1e-6)


def test_snapkv_keeps_its_window_when_there_is_room(last_chunk):
    memory, context = last_chunk
    n, w = len(memory), len(context.positions)
    budget = PROMPT + 4 * w  # a quarter of the free slots = w
    kept = SnapKV().select(memory, budget, context)
    for layer in range(2):
        assert set(range(n - w, n)) <= set(kept[layer].tolist())


@pytest.mark.parametrize("share", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("free", [1, 2, 5, 11, 20, 35, 36, 37, 60, 75])
def test_snapkv_window_never_takes_more_than_its_share_of_free_slots(last_chunk, free, share):
    memory, context = last_chunk
    n, w = len(memory), len(context.positions)
    scores = SnapKVScorer(window_share=share)(memory, context, PROMPT + free)
    unforced = SnapKVScorer(window_share=0.0)(memory, context, PROMPT + free)  # nothing forced
    forced = min(w, math.floor(share * free))
    lifted = scores != unforced
    assert lifted.sum(1).tolist() == [forced, forced]
    assert lifted[:, n - forced :].all(), "the window's newest rows"
    if forced:
        assert (scores[:, n - forced :].min(1).values > unforced.max(1).values).all()


# CriticalKV


def hand_projected_l1(model, memory: KVMemory) -> torch.Tensor:
    """(layers, tokens): mean over query heads h of ||W_O^h v_i||_1, computed head by head."""
    rows = []
    for layer in range(memory.n_layers):
        w_o = output_projection(model.backbone, layer)  # (hidden, heads * d)
        values = memory.layer_values(layer).float()  # (kv_heads, n, d)
        d = values.shape[-1]
        heads = w_o.shape[1] // d
        norms = [
            (values[h // (heads // values.shape[0])] @ w_o[:, h * d : (h + 1) * d].T).abs().sum(-1)
            for h in range(heads)
        ]
        rows.append(torch.stack(norms).mean(0))
    return torch.stack(rows)


@pytest.mark.parametrize("free", [20, 31])
def test_criticalkv_first_stage_then_attention_times_projected_value_norm(model, last_chunk, free):
    memory, context = last_chunk
    budget = PROMPT + free
    attention = SnapKVScorer(32, 7)(memory, context, budget)  # the first score, window lifted
    norms = hand_projected_l1(model, memory)
    kept = CriticalKV().select(memory, budget, context)
    n_first = math.floor(0.5 * free)
    for layer in range(2):
        a = attention[layer, PROMPT:]
        stage_1 = set((a.argsort(descending=True, stable=True)[:n_first] + PROMPT).tolist())
        stage_2_score = (a + 1e-4) * norms[layer, PROMPT:]
        stage_2_score[[i - PROMPT for i in stage_1]] = float("-inf")
        stage_2 = stage_2_score.argsort(descending=True, stable=True)[: free - n_first] + PROMPT
        expected = set(range(PROMPT)) | stage_1 | set(stage_2.tolist())
        assert set(kept[layer].tolist()) == expected
        by_attention = set(range(PROMPT)) | set(
            (a.argsort(descending=True)[:free] + PROMPT).tolist()
        )
        assert set(kept[layer].tolist()) != by_attention, "stage 2 must change something here"


def test_two_stage_wraps_any_scorer():
    """Hand-made first and second scores: stage 1 is the floor(ratio x free) best by the first,
    the rest the best (first + eps) x second."""

    class Fixed(BudgetAwareScorer):
        def __init__(self, scores):
            self.scores = torch.tensor([scores])

        def __call__(self, memory, context, budget):
            return self.scores

    modality = torch.tensor([TEXT] + [VISUAL] * 7)
    memory = hand_memory(torch.randn(1, 1, 8, 2), modality=modality)
    first = Fixed([0.0, 0.9, 0.8, 0.7, 0.1, 0.1, 0.05, 0.0])
    second = Fixed([0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 10.0, 5.0])
    # free = 5: stage 1 keeps 2 (rows 1, 2); stage 2: (a + eps) b = row 6 0.5, row 5 0.2, row 4 0.1
    kept = ComposedPolicy(TwoStage(first, second, 0.5, 1e-4)).select(memory, 6, NO_CONTEXT)
    assert kept.tolist() == [[0, 1, 2, 4, 5, 6]]
    kept = ComposedPolicy(TwoStage(first, second, 1.0, 1e-4)).select(memory, 6, NO_CONTEXT)
    assert kept.tolist() == [[0, 1, 2, 3, 4, 5]], "ratio 1: the first score alone (ties: older)"
    # ratio 0: (a + eps) b alone. Row 7 (a = 0) still scores eps x 5 > 0, above rows 1-3 (b = 0),
    # which tie at 0: the older, row 1, takes the last slot.
    kept = ComposedPolicy(TwoStage(first, second, 0.0, 1e-4)).select(memory, 6, NO_CONTEXT)
    assert kept.tolist() == [[0, 1, 4, 5, 6, 7]]


# InfiniPot-V


def hand_tar(memory: KVMemory, model, layer: int, recent: torch.Tensor, i: int) -> float:
    """-mean over recent tokens j of i's patch of mean_g cos(k_i^g, k_j^g), RoPE undone."""
    keys = content_keys(memory, model.backbone)[layer]  # (kv_heads, n, d)
    patch = memory.meta.patch[layer]
    matches = [j for j in recent.nonzero()[:, 0].tolist() if patch[j] == patch[i]]
    if not matches:
        return 0.0
    cosines = [F.cosine_similarity(keys[:, i], keys[:, j], dim=-1).mean() for j in matches]
    return -float(torch.stack(cosines).mean())


@pytest.mark.parametrize("free", [10, 100])
def test_infinipot_v_splits_free_slots_between_tar_and_value_norm(model, last_chunk, free):
    memory, context = last_chunk
    budget = PROMPT + free
    n_tar = free - round(0.5 * free)
    picks = InfiniPotVScorer()(memory, context, budget)
    kept = InfiniPotV().select(memory, budget, context)
    values = memory.all_values().float().norm(dim=-1).mean(1)
    for layer in range(2):
        recent = recent_frames(memory, layer, 0.25)  # 2 of 8 frames: 32 visual tokens
        assert int(recent.sum()) == 32
        newest = memory.meta.position[layer].masked_fill(~recent, -1)
        tar = set(newest.argsort(descending=True)[: min(n_tar, 32)].tolist())
        if n_tar > 32:  # the rest of TaR's share: the older patches that changed most
            older = (memory.meta.modality[layer] == VISUAL) & ~recent
            older_rows = older.nonzero()[:, 0].tolist()
            redundancy = torch.tensor(
                [hand_tar(memory, model, layer, recent, i) for i in older_rows]
            )
            best = redundancy.argsort(descending=True, stable=True)[: n_tar - 32]
            tar |= {older_rows[b] for b in best.tolist()}
        assert len(tar) == n_tar
        lifted = set((picks[layer] > values[layer].max()).nonzero()[:, 0].tolist())
        assert lifted == tar
        rest = values[layer].clone()
        rest[:PROMPT] = float("-inf")
        rest[list(tar)] = float("-inf")
        van = set(rest.argsort(descending=True)[: free - n_tar].tolist())
        assert set(kept[layer].tolist()) == set(range(PROMPT)) | tar | van


# StreamMem


def test_streammem_keeps_the_highest_attention_of_the_template_prompt(last_chunk):
    memory, context = last_chunk
    n = len(memory)
    expected = []
    for layer, proxy in enumerate(generic_prompt(memory, context, TEMPLATE_ONLY)):
        keys = torch.cat([memory.layer_keys(layer).float(), proxy.extra_keys], dim=1)
        positions = torch.cat([memory.meta.position[layer], proxy.extra_positions])
        keys = keys.repeat_interleave(proxy.queries.shape[0] // keys.shape[0], dim=0)
        logits = proxy.queries @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])
        later = positions.view(1, -1) > proxy.positions.view(-1, 1)
        weights = logits.masked_fill(later, float("-inf")).softmax(-1)[..., :n]  # memory's rows
        saliency = weights.mean(dim=(0, 1))
        saliency[:PROMPT] = float("inf")
        expected.append(set(saliency.argsort(descending=True)[:40].tolist()))
    kept = StreamMem().select(memory, 40, context)
    assert kept_rows(kept) == expected
    recent = make_policy("recent").select(memory, 40, context)
    assert not torch.equal(kept, recent), "the test must tell attention from recency"


# Published defaults and the budget contract


def test_baselines_run_with_their_published_defaults():
    assert make_policy("snapkv").scorer == SnapKVScorer(window=32, kernel=7)
    assert make_policy("criticalkv").scorer == TwoStage(
        SnapKVScorer(32, 7), ProjectedValueNorm(), first_stage_ratio=0.5, epsilon=1e-4
    )
    assert make_policy("infinipot-v").scorer == InfiniPotVScorer(tar_ratio=0.5, query_ratio=0.25)
    assert make_policy("recent").scorer == RecencyScorer(sinks=4)
    assert make_policy("streammem").scorer == PromptAttentionScorer(TEMPLATE_ONLY)


def test_full_refuses_a_budget_below_its_memory_and_otherwise_keeps_all(last_chunk):
    memory, context = last_chunk
    n = len(memory)
    assert make_policy("full").select(memory, n, context).tolist() == [list(range(n))] * 2
    assert make_policy("full").select(memory, n + 5, context).shape == (2, n)
    with pytest.raises(ValueError, match="cannot keep memory to 40 tokens"):
        make_policy("full").select(memory, 40, context)


@pytest.mark.parametrize("name", [name for name in POLICIES if name != "full"])
@pytest.mark.parametrize("free", [1, 2, 11, 60])
def test_every_policy_keeps_the_prompt_and_exactly_the_budget(request, name, free):
    policy = make_policy(name)
    memory, context = request.getfixturevalue(
        "last_chunk_per_head" if policy.head_wise else "last_chunk"
    )
    kept = policy.select(memory, PROMPT + free, context)
    assert kept.shape == (memory.n_units, PROMPT + free)
    assert torch.all(kept[:, 1:] > kept[:, :-1]), "ascending, no duplicates"
    assert torch.all(kept[:, :PROMPT] == torch.arange(PROMPT)), "the prompt is kept"
