"""Shared fixtures: one small generated dataset (written once per test session), and a tiny
random TinyOmni with a short stream (built once per test module: some tests mutate them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnimem_ref.dataset import generate_dataset, load_dataset
from omnimem_ref.model.tokenizer import build_tokenizer
from omnimem_ref.streaming.session import StreamingSession
from tests.model_fixtures import HeadWiseRecorder, Recorder, tiny_model, tiny_stream

SMALL_SEED = 11
SMALL_DURATION = 24.0  # long enough for objects two steps long, short enough to be quick


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 24-second clips (mp4 + wav) with questions and scenes; treat it as read-only."""
    out = tmp_path_factory.mktemp("data") / "small"
    generate_dataset(out, n=2, seed=SMALL_SEED, duration=SMALL_DURATION, progress=False)
    return out


@pytest.fixture(scope="session")
def small_scenes(small_dataset: Path) -> dict:
    return load_dataset(small_dataset)[1]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def stream():
    return tiny_stream()


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def trained():
    """The shipped TinyOmni checkpoint and its tokenizer (read from the package, no download)."""
    from omnimem_ref.model.checkpoint import load_model

    return load_model(None)


@pytest.fixture(scope="module")
def last_chunk(model, tokenizer, stream):
    """(memory, context) with the whole 16-second stream (9 + 8 x 18 = 153 rows) in memory, as
    the final chunk's compression saw them."""
    recorder = Recorder()
    full_length = 9 + stream.n_steps * stream.tokens_per_step
    StreamingSession(model, tokenizer, recorder, budget=full_length - 1).stream(stream)
    return recorder.memory, recorder.context


@pytest.fixture(scope="module")
def last_chunk_per_head(model, tokenizer, stream):
    """(memory, context) in a head-wise memory (one token set per key/value head) as the last
    chunk's compression saw them: 113 rows per head plus the 18-token chunk; two earlier
    compressions by each head's own key norms left the heads of a layer holding different rows."""
    recorder = HeadWiseRecorder()
    StreamingSession(model, tokenizer, recorder, budget=113).stream(stream)
    return recorder.memory, recorder.context
