"""Qwen2.5-Omni's thinker behind the streaming session, on tiny random thinkers built here.

transformers' own ``Qwen2_5OmniThinkerForConditionalGeneration`` with random weights (no
download): streaming chunk by chunk must give what one whole-clip forward of the stock thinker
gives, evictions must equal masks, TMRoPE positions must equal ``get_rope_index``'s, and every
policy must hold its budget.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast
from transformers.models.qwen2.modeling_qwen2 import rotate_half

from omnimem_ref.core import TEXT, rotary_positions
from omnimem_ref.masks import attention_mask
from omnimem_ref.model.qwen_omni import QwenOmniThinker, ThinkerStream, VisionSettings
from omnimem_ref.model.qwen_omni.inputs import MEL_FRAMES_PER_STEP, log_mel
from omnimem_ref.model.qwen_omni.tiny import (
    tiny_thinker,
    tiny_tokenizer,
    whole_clip_inputs,
    whole_clip_positions,
)
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.policies import POLICIES, make_policy
from omnimem_ref.policies.attention import proxy_attention
from omnimem_ref.policies.queries import chunk_tail
from omnimem_ref.policies.selection import flat_content_keys
from omnimem_ref.streaming.compaction import compacted_positions
from omnimem_ref.streaming.session import StreamingSession
from tests.cli_runner import run_cli
from tests.model_fixtures import Recorder, tiny_model
from tests.model_fixtures import tiny_stream as tiny_stream_tinyomni

QUESTION = "what shape was the red object ?"
OPTIONS = ("circle", "square", "triangle", "cross")
# Frames of 60 x 90 pixels become 56 x 84: 4 x 6 patches, 2 x 3 video tokens per frame pair.
SETTINGS = VisionSettings(min_pixels=56 * 56, max_pixels=56 * 84)
STEPS = 4


def tiny_stream(steps: int = STEPS, seed: int = 0) -> ThinkerStream:
    """Random 60 x 90 frames (2 per second) and a noisy tone at 16 kHz."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(4 * steps, 60, 90, 3), dtype=np.uint8)
    t = np.arange(int(steps * 2 * 16_000)) / 16_000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * (t % 2 < 1) + 0.05 * rng.standard_normal(len(t))
    return ThinkerStream.from_arrays(frames, wave.astype(np.float32), SETTINGS)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def thinker(tokenizer):
    return tiny_thinker(tokenizer)


@pytest.fixture(scope="module")
def model(thinker, tokenizer) -> QwenOmniThinker:
    return QwenOmniThinker(thinker, tokenizer)


@pytest.fixture(scope="module")
def stream() -> ThinkerStream:
    return tiny_stream()


def whole_clip(model: QwenOmniThinker, stream: ThinkerStream) -> dict:
    """The stock thinker's inputs for [prompt | clip with its audio | question]."""
    question, _ = model.prompt_format(model.tokenizer).choice_ids(QUESTION, OPTIONS)
    return whole_clip_inputs(model, stream, question)


def option_logits(model: QwenOmniThinker, logits: torch.Tensor) -> torch.Tensor:
    _, letters = model.prompt_format(model.tokenizer).choice_ids(QUESTION, OPTIONS)
    return logits[letters]


def streamed_logits(session: StreamingSession) -> torch.Tensor:
    answer = session.answer(QUESTION, OPTIONS)
    assert answer.logits is not None
    return torch.tensor([answer.logits[o] for o in OPTIONS])


def stock_positions(thinker, inputs: dict) -> torch.Tensor:
    """(3, T) positions ``get_rope_index`` gives the whole clip."""
    return whole_clip_positions(thinker, inputs)


@torch.no_grad()
def masked_forward(thinker, inputs: dict, visible: torch.Tensor) -> torch.Tensor:
    """Last-token logits of one forward over the whole clip, layer ``l`` masked by
    ``visible[l]`` (T, T): the stock encoders and layers, run one by one."""
    model = thinker.model
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    video = torch.cat(
        model.get_video_features(
            inputs["pixel_values_videos"], inputs["video_grid_thw"], return_dict=True
        ).pooler_output
    )
    audio = model.get_audio_features(
        inputs["input_features"], inputs["feature_attention_mask"], return_dict=True
    ).last_hidden_state
    _, video_mask, audio_mask = model.get_placeholder_mask(inputs["input_ids"], embeds)
    embeds = embeds.masked_scatter(video_mask, video).masked_scatter(audio_mask, audio)
    backbone = model.language_model
    positions = stock_positions(thinker, inputs).unsqueeze(1)  # (3, 1, T)
    rotary = backbone.rotary_emb(embeds, positions)
    hidden = embeds
    for layer, layer_visible in zip(backbone.layers, visible, strict=True):
        mask = attention_mask(layer_visible, backbone.config, embeds.dtype)
        hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary)
    return thinker.lm_head(backbone.norm(hidden))[0, -1]


def replayed_visibility(session: StreamingSession, question_length: int) -> torch.Tensor:
    """(layers, T, T) with T = the stream plus the question: the session's replayed masks, and
    the question seeing each layer's final memory and itself causally."""
    visible = session.replay_visibility()
    n = visible.shape[-1]
    total = n + question_length
    full = torch.zeros(visible.shape[0], total, total, dtype=torch.bool)
    full[:, :n, :n] = visible
    assert session.memory.meta is not None
    for layer, kept in enumerate(session.memory.meta.position):
        full[layer, n:, kept] = True
    full[:, n:, n:] = torch.ones(question_length, question_length, dtype=torch.bool).tril()
    return full


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("steps_per_chunk", [1, 2])
def test_streaming_with_full_memory_equals_one_stock_forward(
    tokenizer, stream, attention, steps_per_chunk
):
    thinker = tiny_thinker(tokenizer, attention)
    model = QwenOmniThinker(thinker, tokenizer)
    session = StreamingSession(model, tokenizer, steps_per_chunk=steps_per_chunk)
    session.stream(stream)
    streamed = streamed_logits(session)
    with torch.no_grad():
        stock = thinker(**whole_clip(model, stream)).logits[0, -1]
    assert (streamed - option_logits(model, stock)).abs().max() < 1e-4


def test_streaming_with_evictions_equals_one_forward_with_replayed_masks(model, thinker, stream):
    policy = make_policy("omnimem")
    session = StreamingSession(model, model.tokenizer, policy, budget=90, record_history=True)
    reports = session.stream(stream)
    assert any(r.compressed for r in reports)
    streamed = streamed_logits(session)
    inputs = whole_clip(model, stream)
    question_length = inputs["input_ids"].shape[1] - session.next_position
    masked = masked_forward(thinker, inputs, replayed_visibility(session, question_length))
    everything = torch.ones_like(replayed_visibility(session, question_length)).tril()
    unmasked = masked_forward(thinker, inputs, everything)
    assert (streamed - option_logits(model, masked)).abs().max() < 1e-4
    assert (streamed - option_logits(model, unmasked)).abs().max() > 1e-4, "eviction matters"


def test_positions_after_eviction_equal_get_rope_index_of_the_whole_clip(model, thinker, stream):
    session = StreamingSession(model, model.tokenizer, make_policy("random"), budget=80)
    session.stream(stream)
    memory = session.memory
    assert memory.meta is not None
    expected = stock_positions(thinker, whole_clip(model, stream))
    kept = rotary_positions(memory)  # (3, layers, 80)
    assert kept.shape == (3, 2, 80)
    for layer in range(2):
        assert torch.equal(kept[:, layer], expected[:, memory.meta.position[layer]])
    assert not torch.equal(kept[:, 0], kept[:, 1]), "layers kept different tokens"


def test_leaving_position_ids_out_after_an_eviction_is_wrong(model, stream):
    """Without explicit positions the thinker numbers new tokens from the cache's length."""
    session = StreamingSession(model, model.tokenizer, make_policy("recent"), budget=80)
    session.stream(stream)
    right = streamed_logits(session)
    question, letters = model.prompt_format(model.tokenizer).choice_ids(QUESTION, OPTIONS)
    ids = torch.tensor(question)
    backbone = model.backbone
    visible = torch.ones(len(ids), len(session.memory) + len(ids), dtype=torch.bool)
    visible[:, -len(ids) :] = visible[:, -len(ids) :].tril()
    with torch.no_grad():
        out = backbone(
            inputs_embeds=model.embed_text(ids).unsqueeze(0),
            attention_mask=attention_mask(visible, backbone.config),
            cache=session.memory.cache,
            use_cache=True,
        )
        wrong = model.answer_logits(out.last_hidden_state[0, -1])[letters]
    assert (right - wrong).abs().max() > 1e-2


def test_undoing_the_rotation_recovers_the_projected_keys(model, stream):
    """Content keys (TMRoPE undone with each row's three positions) equal ``k_proj`` of layer 0's
    input, which the stream's embeddings are, whatever the token's time, row or column."""
    session = StreamingSession(model, model.tokenizer)
    session.stream(stream)
    block = model.backbone.layers[0]
    with torch.no_grad():
        chunk = stream.chunk(model, range(0, STEPS), session.prefix_length, session.origin)
        keys = block.self_attn.k_proj(block.input_layernorm(chunk.embeddings))
        undone = flat_content_keys(session.memory, model.backbone)[0, session.prefix_length :]
    assert (undone - keys).abs().max() < 1e-5


def test_encoders_per_chunk_equal_the_whole_clip_but_log_mel_per_chunk_does_not(model, stream):
    with torch.no_grad():
        whole_video = model.encode_video(stream.pixels, stream.grid)
        per_chunk = torch.cat(
            [model.encode_video(stream.pixels[i : i + 2], stream.grid) for i in (0, 2, 4, 6)]
        )
        whole_audio = model.encode_audio(stream.mel)
        pieces = stream.mel.split(MEL_FRAMES_PER_STEP, dim=1)
        audio_per_chunk = torch.cat([model.encode_audio(piece) for piece in pieces])
    assert (whole_video - per_chunk).abs().max() < 1e-6
    assert (whole_audio - audio_per_chunk).abs().max() < 1e-5
    t = np.arange(4 * 16_000) / 16_000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (t < 1)).astype(np.float32)
    sliced = log_mel(wave, 2)[:, MEL_FRAMES_PER_STEP:]
    alone = log_mel(wave[32_000:], 1)
    assert (sliced - alone).abs().max() > 0.1, "a chunk's own log-mel is not the clip's slice"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_holds_the_budget_on_the_thinker(model, stream, name):
    budget = None if name == "full" else 80  # "full" refuses any budget
    session = StreamingSession(model, model.tokenizer, make_policy(name), budget=budget)
    reports = session.stream(stream)
    if budget is None:
        assert len(session.memory) == session.prefix_length + STEPS * stream.tokens_per_step
    else:
        assert all(r.total_tokens <= budget for r in reports)
        assert all(r.peak_tokens <= budget + stream.tokens_per_step for r in reports)
        assert len(session.memory) == budget
    answer = session.answer(QUESTION, OPTIONS)
    assert abs(sum(answer.probabilities.values()) - 1) < 1e-5


@pytest.fixture(scope="module")
def thinker_folder(tmp_path_factory, thinker, tokenizer):
    """What save_pretrained writes for the tiny thinker and its tokenizer, plus a video processor
    setting that keeps frames at 56 x 56 pixels (4 video tokens per frame pair)."""
    folder = tmp_path_factory.mktemp("thinker")
    thinker.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "video_preprocessor_config.json").write_text(
        '{"min_pixels": 3136, "max_pixels": 3136}'
    )
    return folder


# 24 s span 600 time positions: a limit of 200 compacts memory several times.
@pytest.mark.parametrize("compaction", [[], ["--rotary-limit", "200"]])
def test_demo_streams_a_clip_through_a_saved_thinker(
    capsys, tmp_path, thinker_folder, small_dataset, compaction
):
    clip = small_dataset / "clip_0000.mp4"
    code, out, err = run_cli(
        capsys,
        "demo",
        "--model", str(thinker_folder),
        "--clip", str(clip),
        "--policy", "omnimem",
        "--budget", "0.1",
        "--out", str(tmp_path),
        *compaction,
    )  # fmt: skip
    assert code == 0, err
    # 24 s: 12 steps of 2 frame pairs x 4 video tokens and 50 audio tokens, after the prompt.
    assert "12 steps, 735 tokens" in out and "budget 74" in out  # 10% of 735, rounded up
    assert "memory at the end: text 39, visual" in out
    assert out.count("model: ") == 4  # one answer per question, by letter
    assert (tmp_path / "clip_0000_omnimem_memory.png").is_file()


def test_eval_answers_the_synthetic_questions_with_a_saved_thinker(
    capsys, thinker_folder, small_dataset
):
    """``omnimem eval --model DIR``: the same clips and questions TinyOmni is evaluated on,
    streamed through the thinker and answered by option letter; memory held at the budget."""
    args = ["--data", str(small_dataset), "--policy", "omnimem", "--budget", "60", "--json"]
    code, out, err = run_cli(capsys, "eval", "--model", str(thinker_folder), *args)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n"] == 8 and 0 <= summary["accuracy"] <= 1  # 2 clips x 4 questions
    assert summary["peak_kv_tokens"] <= 60 + 146  # the budget plus one 2-s chunk (4 x 2 x 4 + 50)
    code, _, err = run_cli(capsys, "eval", "--model", str(thinker_folder), "--dtype", "float16",
                           "--device", "tpu", *args)  # fmt: skip
    assert code == 2 and "tpu" in err
    code, _, err = run_cli(capsys, "eval", "--model", str(thinker_folder),
                           "--log-length-keys", "1105", *args)  # fmt: skip
    assert code == 2 and "TinyOmni's" in err and err.count("\n") == 1


def test_cost_measures_a_saved_thinker(capsys, tmp_path, thinker_folder):
    """``omnimem cost --model DIR``: compression against prefill on the thinker itself, fed
    random frames; every policy compresses the planned number of times at the budget."""
    out_json = tmp_path / "cost.json"
    code, out, err = run_cli(
        capsys,
        "cost",
        "--model", str(thinker_folder),
        "--size", "56",
        "--budgets", "200,400",
        "--compressions", "2",
        "--policies", "vnorm,omnimem",
        "--json", str(out_json),
    )  # fmt: skip
    assert code == 0, err
    assert f"thinker in {thinker_folder}: 2 layers x 32 wide" in out
    records = json.loads(out_json.read_text())["records"]
    assert {(r["policy"], r["budget_tokens"]) for r in records} == {
        (p, b) for p in ("vnorm", "omnimem") for b in (200, 400)
    }
    assert all(r["compressions"] == 2 and r["compress_ms_per_compression"] > 0 for r in records)


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (None, "No model folder"),
        ("config.json", "has no config.json"),
        ("model.safetensors", "has no weights"),
        ("tokenizer.json", "has no tokenizer files"),
    ],
)
def test_demo_refuses_an_incomplete_model_folder_in_one_sentence(
    capsys, tmp_path, thinker_folder, small_dataset, remove, message
):
    folder = tmp_path / "model"
    if remove is not None:
        shutil.copytree(thinker_folder, folder)
        (folder / remove).unlink()
    clip = str(small_dataset / "clip_0000.mp4")
    code, out, err = run_cli(capsys, "demo", "--model", str(folder), "--clip", clip)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_proxy_queries_attend_as_the_thinker_itself_attends(tokenizer, stream):
    """Chunk-tail queries, rotated by the policies with their three rows, give the attention the
    stock thinker (eager, whole clip) computes for those tokens: the 3-section rotation of queries
    and keys is the model's own."""
    thinker = tiny_thinker(tokenizer, "eager")
    model = QwenOmniThinker(thinker, tokenizer)
    recorder = Recorder()
    full_length = 39 + STEPS * stream.tokens_per_step  # compress once, after the last chunk
    StreamingSession(model, tokenizer, recorder, budget=full_length - 1).stream(stream)
    with torch.no_grad():
        stock = thinker(**whole_clip(model, stream), output_attentions=True).attentions
        for layer, proxy in enumerate(chunk_tail(recorder.context, window=8)):
            weights, _ = proxy_attention(recorder.memory, layer, proxy)  # (heads, 8, memory)
            expected = stock[layer][0, :, full_length - 8 : full_length, :full_length]
            assert (weights - expected).abs().max() < 1e-5


def test_compaction_moves_nothing_when_nothing_was_evicted(model, stream):
    session = StreamingSession(model, model.tokenizer)
    session.stream(stream)
    memory = session.memory
    assert memory.meta is not None
    rotary = rotary_positions(memory)
    moving = model.time_rows(memory.meta.modality)
    stream_rows = memory.meta.modality != TEXT
    assert torch.equal(compacted_positions(rotary, stream_rows, moving, session.origin), rotary)


def test_compaction_keeps_positions_below_the_limit_with_keys_at_their_new_positions(model):
    """12 steps span 600 time positions; compacting before 200 keeps memory inside the limit,
    and every cached key is exactly the key computed at its new position."""
    long_stream = tiny_stream(steps=12, seed=1)
    limit = 200
    session = StreamingSession(
        model, model.tokenizer, make_policy("omnimem"), budget=60, rotary_limit=limit
    )
    peaks = []
    session.stream(long_stream, lambda _: peaks.append(int(rotary_positions(session.memory).max())))
    assert session.time_shift > 0, "the stream passed the limit, so it was compacted"
    assert max(peaks) < limit
    answer = session.answer(QUESTION, OPTIONS)
    assert abs(sum(answer.probabilities.values()) - 1) < 1e-5
    # Layer 0's keys: RoPE(k_proj(norm(embedding))) at the stored, compacted positions.
    memory, backbone = session.memory, model.backbone
    assert memory.meta is not None
    rows = memory.meta.position[0] >= session.prefix_length
    positions = memory.meta.position[0, rows] - session.prefix_length
    with torch.no_grad():
        everything = long_stream.chunk(model, range(12), session.prefix_length, session.origin)
        block = backbone.layers[0]
        keys = block.self_attn.k_proj(block.input_layernorm(everything.embeddings[positions]))
        keys = keys.view(len(positions), -1, block.self_attn.head_dim).transpose(0, 1)
        rotary = rotary_positions(memory)[:, 0, rows]
        cos, sin = backbone.rotary_emb(keys, rotary.unsqueeze(1))
        expected = keys * cos + rotate_half(keys) * sin
    assert (memory.layer_keys(0)[:, rows] - expected).abs().max() < 1e-5


def test_compaction_on_tinyomni_gives_streamingllm_positions():
    """Plain RoPE: after a compaction the stream's kept rows sit right after the prompt, in
    order (StreamingLLM's positions inside the cache)."""
    tiny, stream = tiny_model(), tiny_stream_tinyomni()
    session = StreamingSession(
        tiny, build_tokenizer(), make_policy("recent"), budget=40, rotary_limit=60
    )
    session.stream(stream)  # 9 + 8 x 18 = 153 positions without compaction
    rotary = rotary_positions(session.memory)[0]  # (layers, 40): one row
    assert int(rotary.max()) < 60 and session.time_shift > 0
    assert torch.equal(rotary[:, :9], torch.arange(9).expand(2, -1))  # the prompt never moves
    assert bool((rotary[:, 10:] - rotary[:, 9:-1] == 1).all()), "no gap between kept rows"


def test_long_stream_script_runs_a_thinker_of_a_given_shape_at_flat_memory():
    """scripts/long_stream.py --thinker (prepared for a lent GPU at the 7B shape) on the CPU with
    the tiny decoder shape and one-layer encoders: memory reaches the budget and stays there."""
    from omnimem_ref.cost import SHAPES
    from omnimem_ref.model.qwen_omni.shapes import _mrope_section, shaped_thinker
    from tests.script_loader import load_script

    long_stream = load_script("long_stream")
    argv = "--thinker --shape tiny --encoders tiny --size 56 --minutes 0.4 --budget 400"
    windows = long_stream.main([*argv.split(), "--report-every", "8"])
    assert [w["tokens_per_layer"] for w in windows] == [400.0] * len(windows)
    assert len(windows) == 3 and all(w["video_seconds_per_second"] > 0 for w in windows)
    assert _mrope_section(128) == [16, 24, 24]  # Qwen2.5-Omni's split of 64 frequencies
    model = shaped_thinker(SHAPES["tiny"], encoders="tiny")
    text = model.config.text_config
    assert (text.num_hidden_layers, text.hidden_size, text.num_key_value_heads) == (4, 128, 2)
