"""Compression policies on a tiny random TinyOmni: the maths of each stage, and the budget contract."""

from __future__ import annotations

import copy

import pytest
import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.errors import OmniMemError
from omnimem_ref.model.modeling import AUDIO, TEXT, VISUAL
from omnimem_ref.policies import POLICIES, ComposedPolicy, make_policy, selection
from omnimem_ref.policies.allocation import (
    FixedShare,
    Proportional,
    ScoreMass,
    allocate,
    water_fill,
)
from omnimem_ref.policies.attention import attend, proxy_attention, visible_keys
from omnimem_ref.policies.base import ChunkContext
from omnimem_ref.policies.oracle import head_output_change, layer_output_change
from omnimem_ref.policies.perturbation import (
    PerturbationScorer,
    leave_one_out_scores,
    projected_values,
    uniform_scores,
)
from omnimem_ref.policies.projection import output_projection, output_projection_slices
from omnimem_ref.policies.queries import (
    GENERIC_QUESTION,
    ProxyQueries,
    chunk_tail,
    generic_prompt,
)
from omnimem_ref.policies.selection import (
    RedundancyAware,
    content_keys,
    distinct_top_k,
    flat_content_keys,
    top_k,
)
from omnimem_ref.streaming.oracle import answer_kl_oracle
from omnimem_ref.streaming.session import StreamingSession
from tests.model_fixtures import OPTIONS, QUESTION, Recorder, attention_outputs, tiny_stream

BUDGET = 40


def proxies_of(kind, memory, context):
    if kind == "tail":
        return chunk_tail(context, 32)
    return generic_prompt(memory, context, GENERIC_QUESTION)


def test_proxy_queries_reproduce_the_layers_own_attention(model, tokenizer, stream):
    """Chunk-tail queries + our attention == what the backbone computed for those tokens."""
    recorder = Recorder()
    full_length = 9 + stream.n_steps * stream.tokens_per_step
    with attention_outputs(model) as captured:
        StreamingSession(model, tokenizer, recorder, budget=full_length - 1).stream(stream)
    memory, context = recorder.memory, recorder.context
    for layer, proxy in enumerate(chunk_tail(context, 32)):
        _, output = proxy_attention(memory, layer, proxy)  # (heads, w, d)
        actual = captured[layer].view(output.shape[1], output.shape[0], -1).transpose(0, 1)
        assert torch.allclose(output, actual, atol=1e-5)


def test_generic_prompt_leaves_memory_unchanged(last_chunk):
    memory, context = last_chunk
    before = [memory.layer_keys(layer).clone() for layer in range(memory.n_layers)]
    generic_prompt(memory, context, GENERIC_QUESTION)
    for layer in range(memory.n_layers):
        assert torch.equal(memory.layer_keys(layer), before[layer])


@pytest.mark.parametrize("kind", ["tail", "prompt"])
def test_leave_one_out_score_is_the_layer_output_change_of_brute_force_eviction(
    model, last_chunk, kind
):
    """Evict each token from every head of a layer, recompute the attention and o_proj from
    scratch (float64): the score is how far the layer's output moved, averaged over queries."""
    memory, context = last_chunk
    n = len(memory)
    for layer, proxy in enumerate(proxies_of(kind, memory, context)):
        keys, vals, positions = visible_keys(memory, layer, proxy)
        w_o = output_projection(model.backbone, layer)
        brute = layer_output_change(proxy.queries, proxy.positions, keys, vals, positions, w_o, n)
        score = leave_one_out_scores(memory, model.backbone, proxy, layer, "sum")[0]
        assert torch.allclose(score.double(), brute.mean(0), rtol=1e-4, atol=1e-6)
        per_head = head_output_change(
            proxy.queries,
            proxy.positions,
            keys,
            vals,
            positions,
            output_projection_slices(model.backbone, layer),
        )[..., :n]
        score_mean = leave_one_out_scores(memory, model.backbone, proxy, layer, "mean")[0]
        assert torch.allclose(score_mean.double(), per_head.mean((0, 1)), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("heads", ["sum", "mean"])
def test_uniform_fast_path_equals_the_definition_and_brute_force(model, last_chunk, heads):
    """No query = a query whose logits are all equal (zero): a = 1/N. The cached fast path
    (||w_i - w̄|| / (N - 1)) equals the direct formula and a brute-force eviction."""
    memory, _ = last_chunk
    fast = uniform_scores(memory, model.backbone, heads)
    attention = model.backbone.layers[0].self_attn
    n_heads = model.backbone.config.num_attention_heads
    zero = ProxyQueries(
        torch.zeros(n_heads, 1, attention.head_dim), memory.meta.position[0, -1:].clone()
    )
    for layer in range(memory.n_layers):
        direct = leave_one_out_scores(memory, model.backbone, zero, layer, heads)[0]
        assert torch.allclose(fast[layer], direct, rtol=1e-4, atol=1e-7)
        if heads == "sum":
            keys, vals, positions = visible_keys(memory, layer, zero)
            w_o = output_projection(model.backbone, layer)
            brute = layer_output_change(zero.queries, zero.positions, keys, vals, positions, w_o)
            assert torch.allclose(fast[layer].double(), brute[0], rtol=1e-4, atol=1e-7)


def test_sum_over_heads_is_not_the_mean_of_head_norms(model, last_chunk):
    """The two reductions are different numbers (heads' changes partly cancel in o_proj)."""
    memory, _ = last_chunk
    total = uniform_scores(memory, model.backbone, "sum")
    mean = uniform_scores(memory, model.backbone, "mean")
    assert not torch.allclose(total, mean, rtol=1e-2)


def _float32_equals_float64_brute_force(memory, backbone, proxy, layer):
    keys, vals, positions = visible_keys(memory, layer, proxy)
    w_o = output_projection(backbone, layer)
    n = len(memory)
    reference = layer_output_change(
        proxy.queries, proxy.positions, keys, vals, positions, w_o, n
    ).mean(0)
    score = leave_one_out_scores(memory, backbone, proxy, layer, "sum")[0]
    assert score.dtype == torch.float32
    assert torch.allclose(score.double(), reference, rtol=1e-3, atol=1e-6 * float(reference.max()))
    k = n // 5
    assert set(score.topk(k).indices.tolist()) == set(reference.topk(k).indices.tolist())
    weights, _ = attend(proxy.queries, proxy.positions, keys, vals, positions)
    return float(weights.amax())


@torch.no_grad()
@pytest.mark.parametrize("kind", ["tail", "prompt"])
def test_float32_scores_match_float64_on_the_trained_checkpoint(trained, kind):
    """On the shipped checkpoint some heads put > 99% of a query's weight on one key: the float32
    score still equals a float64 brute-force eviction, and keeps the same tokens."""
    model, tokenizer = trained
    stream = tiny_stream(seconds=40.0, seed=3)
    recorder = Recorder()
    full_length = 9 + stream.n_steps * stream.tokens_per_step
    StreamingSession(model, tokenizer, recorder, budget=full_length - 1).stream(stream)
    memory, context = recorder.memory, recorder.context
    peaks = [
        _float32_equals_float64_brute_force(memory, model.backbone, proxy, layer)
        for layer, proxy in enumerate(proxies_of(kind, memory, context))
    ]
    assert max(peaks) > 0.99, "some head should nearly saturate for this test to mean much"


@torch.no_grad()
def test_float32_scores_survive_fully_saturated_heads(model, last_chunk):
    """Queries scaled up until one key takes all but ~1e-12 of the weight (a = 1.0 in float32,
    so ``a / (1 - a)`` would be infinite): the float32 score still equals float64 brute force."""
    memory, context = last_chunk
    for layer, proxy in enumerate(chunk_tail(context, 32)):
        sharp = ProxyQueries(proxy.queries * 3000.0, proxy.positions)
        peak = _float32_equals_float64_brute_force(memory, model.backbone, sharp, layer)
        assert peak > 1 - 1e-7


def test_cached_projected_values_follow_evictions(model, tokenizer, stream):
    """The per-token stores are gathered with the cache: after many evictions they still equal a
    fresh computation for the rows memory now holds."""
    session = StreamingSession(model, tokenizer, make_policy("omnimem"), budget=BUDGET)
    session.stream(stream)
    memory = session.memory
    stored = {"w": projected_values(memory, model.backbone)}
    stored["keys"] = content_keys(memory, model.backbone)
    fresh = KVMemory(memory.n_layers)
    fresh.cache, fresh.meta = memory.cache, memory.meta
    assert torch.allclose(stored["w"], projected_values(fresh, model.backbone), atol=1e-6)
    assert torch.allclose(stored["keys"], content_keys(fresh, model.backbone), atol=1e-6)


def test_per_token_store_is_redone_when_kept_rows_were_never_computed(model, tokenizer, stream):
    session = StreamingSession(model, tokenizer)
    session.feed(stream, range(0, 2))
    memory = session.memory
    projected_values(memory, model.backbone)  # the store now covers the rows so far
    session.feed(stream, range(2, 3))  # a chunk the store has not seen
    n = len(memory)
    memory.keep(torch.arange(n - 12, n).expand(memory.n_layers, -1))  # keeps rows of that chunk
    fresh = KVMemory(memory.n_layers)
    fresh.cache, fresh.meta = memory.cache, memory.meta
    expected = projected_values(fresh, model.backbone)
    assert torch.allclose(projected_values(memory, model.backbone), expected, atol=1e-6)


@pytest.mark.parametrize("name", [name for name in POLICIES if name != "full"])
@pytest.mark.parametrize("steps_per_chunk", [1, 2])
def test_every_policy_holds_the_budget_and_keeps_the_prompt(
    model, tokenizer, stream, name, steps_per_chunk
):
    session = StreamingSession(model, tokenizer, make_policy(name), BUDGET, steps_per_chunk)
    for report in session.stream(stream):
        assert report.total_tokens <= BUDGET
    meta = session.memory.meta
    units = 2 * (2 if name.endswith("-per-head") else 1)  # layers x (kv heads, head-wise)
    assert meta.position.shape == (units, BUDGET)
    assert torch.all(meta.position[:, 1:] > meta.position[:, :-1]), "stream order, no duplicates"
    assert torch.all((meta.modality == TEXT).sum(1) == session.prefix_length)
    session.answer(QUESTION, OPTIONS)  # memory is usable


def test_full_memory_keeps_everything(model, tokenizer, stream):
    session = StreamingSession(model, tokenizer, make_policy("full"))  # no budget: never asked
    session.stream(stream)
    assert len(session.memory) == 9 + stream.n_steps * stream.tokens_per_step
    with pytest.raises(ValueError, match="cannot keep memory to 40 tokens"):
        StreamingSession(model, tokenizer, make_policy("full"), BUDGET).stream(stream)


def test_unknown_policy_lists_every_valid_name():
    with pytest.raises(OmniMemError) as error:
        make_policy("h2o")
    for name in POLICIES:
        assert name in str(error.value)


def test_perturbation_scorer_rejects_unknown_proxy():
    with pytest.raises(ValueError, match="tail"):
        PerturbationScorer("question")


@pytest.mark.parametrize("proxy", ["tail", "prompt", "tail+uniform"])
def test_perturbation_scores_are_finite_and_non_negative(last_chunk, proxy):
    memory, context = last_chunk
    scores = PerturbationScorer(proxy)(copy.deepcopy(memory), context)
    assert scores.shape == (memory.n_layers, len(memory))
    assert torch.isfinite(scores).all() and (scores >= 0).all()


# Stage 1: allocation


def shares_ok(shares, counts, free):
    assert sum(shares) == min(free, sum(counts))
    assert all(0 <= share <= count for share, count in zip(shares, counts, strict=True))


@pytest.mark.parametrize("seed", range(20))
def test_allocations_sum_to_the_budget_within_capacity(seed):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 40, (3,), generator=g)
    counts[VISUAL] += 1
    free = int(torch.randint(1, int(counts.sum()) + 1, (1,), generator=g))
    mass = (torch.rand(3, generator=g).double() * counts).tolist()
    counts = counts.tolist()
    for allocation in (Proportional(), FixedShare(), ScoreMass(), ScoreMass(floor=0.3)):
        shares_ok(allocation(counts, mass, free), counts, free)


def test_score_mass_floors_protect_a_light_modality():
    counts = [0, 200, 20]
    mass = [0.0, 100.0, 0.001]
    shares = ScoreMass(floor=0.1)(counts, mass, 40)
    assert shares == [0, 36, 4]  # audio floor: 10% of 40
    shares = ScoreMass(floor=0.1)([0, 200, 2], mass, 40)
    assert shares == [0, 38, 2]  # a floor never exceeds what the modality holds


def test_score_mass_follows_mass_and_redistributes_excess():
    counts = [0, 100, 5]
    mass = [0.0, 1.0, 9.0]
    shares = ScoreMass(floor=0.0)(counts, mass, 20)
    assert shares == [0, 15, 5]  # audio would get 18 but holds 5: the rest goes visual


def test_fixed_and_proportional_shares():
    counts = [0, 160, 20]
    mass = [0.0, 0.0, 0.0]
    assert FixedShare(rho=0.25)(counts, mass, 40) == [0, 30, 10]
    assert FixedShare(rho=0.25)([0, 160, 4], mass, 40) == [0, 36, 4]
    assert Proportional()(counts, mass, 45) == [0, 40, 5]
    assert water_fill([1.0, 1.0], [3, 100], 10) == [3, 7]


# Stage 3: selection


def test_redundancy_aware_selection_prefers_distinct_keys():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    keys = torch.stack([a, a + 0.01 * b, b, -a])
    scores = torch.tensor([1.0, 0.99, 0.5, 0.1])
    same_group = torch.zeros(4, dtype=torch.long)
    chosen = distinct_top_k(scores, keys, same_group, 2).tolist()
    assert sorted(chosen) == [0, 2], "the near-duplicate of the first pick is skipped"
    assert sorted(scores.topk(2).indices.tolist()) == [0, 1], "plain top-k keeps both duplicates"
    other_groups = torch.tensor([0, 1, 2, 3])  # different patches never discount each other
    assert sorted(distinct_top_k(scores, keys, other_groups, 2).tolist()) == [0, 1]


def test_redundancy_threshold_spares_merely_similar_keys():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    keys = torch.stack([a, a + 0.8 * b, b, -a - b])  # cos(k0, k1) ~ 0.6 after centring
    scores = torch.tensor([1.0, 0.9, 0.6, 0.1])
    groups = torch.zeros(4, dtype=torch.long)
    assert sorted(distinct_top_k(scores, keys, groups, 2).tolist()) == [0, 2]
    assert sorted(distinct_top_k(scores, keys, groups, 2, threshold=0.9).tolist()) == [0, 1]


def test_batched_redundancy_selection_equals_one_pool_at_a_time(model, last_chunk, monkeypatch):
    """All layers and pools at once == `distinct_top_k` on each layer's pool of each modality, and
    == the same selection one layer per batch (what large memories use)."""
    memory, context = last_chunk
    scores = PerturbationScorer("uniform")(memory, context)
    budget = len(memory) // 4
    shares = allocate(ScoreMass(), memory, scores, budget)
    kept = RedundancyAware()(scores, memory, context, shares, budget)
    keys = flat_content_keys(memory, model.backbone)
    meta = memory.meta
    groups = torch.where(meta.modality == VISUAL, meta.patch, -1 - meta.modality)
    for layer in range(memory.n_layers):
        for modality in (VISUAL, AUDIO):
            pool = ((meta.modality[layer] == modality) & ~memory.must_keep()[layer]).nonzero()[:, 0]
            k = int(shares[layer, modality])
            chosen = distinct_top_k(scores[layer, pool], keys[layer, pool], groups[layer, pool], k)
            in_pool = kept[layer][torch.isin(kept[layer], pool)]
            assert sorted(pool[chosen].tolist()) == in_pool.tolist()
    one_unit_at_a_time = lambda n_units, *sizes: [slice(i, i + 1) for i in range(n_units)]  # noqa: E731
    monkeypatch.setattr(selection, "unit_batches", one_unit_at_a_time)
    assert torch.equal(RedundancyAware()(scores, memory, context, shares, budget), kept)


def test_content_keys_undo_rope(model, last_chunk):
    """Un-rotated cached keys equal k_proj(input_layernorm(h)) computed without any RoPE."""
    memory, context = last_chunk
    block = model.backbone.layers[0]
    hidden = context.hidden_states[0][0]
    with torch.no_grad():
        raw = block.self_attn.k_proj(block.input_layernorm(hidden))
    raw = raw.view(hidden.shape[0], -1, block.self_attn.head_dim).transpose(0, 1)
    unrotated = content_keys(memory, model.backbone)[0, :, -hidden.shape[0] :]
    assert torch.allclose(unrotated, raw, atol=1e-5)
    assert not torch.allclose(memory.layer_keys(0)[:, -hidden.shape[0] :], raw, atol=1e-3)


def test_modality_shares_are_filled_by_top_k(last_chunk):
    memory, context = last_chunk
    scores = torch.rand(memory.n_layers, len(memory))
    shares = torch.tensor([[0, 20, 5], [0, 10, 15]])
    kept = top_k(scores, memory, context, shares, 9 + 25)
    for layer in range(2):
        modality = memory.meta.modality[layer, kept[layer]]
        assert int((modality == VISUAL).sum()) == shares[layer, VISUAL]
        assert int((modality == AUDIO).sum()) == shares[layer, AUDIO]


# Oracle


def test_answer_kl_oracle(model, tokenizer, stream):
    session = StreamingSession(model, tokenizer)
    session.stream(stream)
    before = session.answer(QUESTION, OPTIONS).probabilities
    positions, kl = answer_kl_oracle(session, QUESTION, OPTIONS)
    assert positions.shape == kl.shape == (len(session.memory),)
    assert torch.all(kl >= -1e-7) and kl.max() > 0
    assert session.answer(QUESTION, OPTIONS).probabilities == before, "memory restored"


def test_linear_time_redundancy_equals_all_pairs_where_groups_are_small():
    """Comparing each candidate with its group's best `compare_with` members is the all-pairs
    rule whenever no group holds more than `compare_with + 1` candidates."""
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 200, generator=generator)
    keys = torch.randn(3, 200, 8, generator=generator)
    groups = torch.randint(-3, 20, (3, 200), generator=generator)
    largest = max(int(torch.bincount(g + 3).max()) for g in groups)
    exact = selection.redundancy_adjusted(scores, keys, groups)
    bounded = selection.bounded_redundancy_adjusted(scores, keys, groups, 0.0, largest - 1)
    assert torch.allclose(bounded, exact, atol=1e-6)
    assert not torch.allclose(
        selection.bounded_redundancy_adjusted(scores, keys, groups, 0.0, 2), exact, atol=1e-3
    ), "comparing with only 2 must differ somewhere, or the test proves nothing"


def test_linear_time_redundancy_still_drops_duplicates_of_the_best():
    """A group of 100 copies of one key behind its best member: every copy is discounted to zero
    even though each is compared with only the group's 4 best."""
    key = torch.tensor([1.0, 2.0, 3.0])
    keys = torch.cat([key.expand(100, -1), torch.randn(50, 3)]).unsqueeze(0)
    scores = torch.linspace(1.0, 0.5, 150).unsqueeze(0)
    groups = torch.cat([torch.zeros(100), torch.arange(1, 51)]).long().unsqueeze(0)
    adjusted = selection.bounded_redundancy_adjusted(scores, keys, groups, 0.0, 4)
    assert adjusted[0, 0] == scores[0, 0]
    assert torch.allclose(adjusted[0, 1:100], torch.zeros(99), atol=1e-5)
    assert torch.equal(adjusted[0, 100:], scores[0, 100:])  # alone in their groups


@pytest.mark.parametrize("budget_share", [0.1, 0.3])
def test_linear_time_selection_matches_all_pairs_on_a_trained_stream(trained, budget_share):
    """On the shipped checkpoint and a 40-second stream, the default (compare_with=16) keeps the
    same tokens as the all-pairs reference."""
    model, tokenizer = trained
    stream = tiny_stream(seconds=40.0, seed=5)
    full_length = 9 + stream.n_steps * stream.tokens_per_step
    budget = int(budget_share * full_length)
    kept = {}
    for compare_with in (16, None):
        policy = ComposedPolicy(
            PerturbationScorer(), ScoreMass(), RedundancyAware(compare_with=compare_with)
        )
        session = StreamingSession(model, tokenizer, policy, budget)
        session.stream(stream)
        kept[compare_with] = session.memory.meta.position
    assert torch.equal(kept[16], kept[None])


def test_scores_see_an_active_lora_adapter(tokenizer, stream):
    """Under peft the base o_proj.weight stays as it was; the scorer must read base + B A, and
    go back to the base when the adapter is disabled."""
    from omnimem_ref.model.adapter import attach_lora, lora_config
    from tests.model_fixtures import tiny_model

    model = tiny_model()
    session = StreamingSession(model, tokenizer)
    session.stream(stream)
    context = ChunkContext(model, (), torch.tensor([len(session.memory) - 1]))
    base = PerturbationScorer()(session.memory, context)
    peft_model = attach_lora(model, lora_config(rank=4, alpha=8))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name and "o_proj" in name:
                p.normal_(0, 0.5)
    adapted = PerturbationScorer()(session.memory, context)
    assert not torch.allclose(adapted, base, rtol=1e-3)
    with peft_model.disable_adapter():
        assert torch.allclose(PerturbationScorer()(session.memory, context), base, atol=1e-6)
    merged = peft_model.merge_and_unload()  # plain Linear layers holding base + B A
    assert torch.allclose(PerturbationScorer()(session.memory, context), adapted, atol=1e-5)
    assert merged is model


def test_leave_one_out_scores_do_not_depend_on_the_query_blocks(model, last_chunk):
    memory, context = last_chunk
    proxy = chunk_tail(context, 32)[0]
    for heads in ("sum", "mean"):
        whole = leave_one_out_scores(memory, model.backbone, proxy, 0, heads)
        one_by_one = leave_one_out_scores(memory, model.backbone, proxy, 0, heads, max_floats=1)
        assert torch.allclose(whole, one_by_one, rtol=1e-5, atol=1e-8)
