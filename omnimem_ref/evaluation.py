"""Accuracy of a policy at a budget on a folder of generated clips.

Every clip is streamed once through a :class:`~omnimem_ref.streaming.session.StreamingSession`
with the policy and budget, then all of its questions are asked of the compressed memory.

Clips are read a chunk at a time (:class:`~omnimem_ref.clip_stream.ClipStream`) and the session
keeps no replay history, so under a budget the memory an evaluation needs does not grow with the
clip's length (``scripts/eval_memory.py`` measures it).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from tqdm.auto import tqdm

from omnimem_ref.budget import Budget
from omnimem_ref.clip_stream import ClipStream
from omnimem_ref.dataset import load_dataset
from omnimem_ref.features import stream_tokens
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.policies import make_policy
from omnimem_ref.streaming.session import StreamingSession
from omnimem_ref.world import ALL_FAMILIES, Question


@dataclass
class EvalResult:
    policy: str
    budget: str | None
    n: int
    accuracy: float
    by_family: dict[str, float]
    peak_kv_tokens: int
    peak_kv_bytes: int
    budget_exceeds_stream: int  # clips where the budget held the whole stream: nothing evicted
    predictions: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "predictions"}


def kv_bytes_per_token(model: TinyOmniModel) -> int:
    """Keys + values of one token over all layers, in the model's dtype."""
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    element = next(model.parameters()).element_size()
    return 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * element


def evaluate(
    model: TinyOmniModel,
    tokenizer: Tokenizer,
    data_dir: str | Path,
    policy: str = "full",
    budget: Budget | None = None,
    progress: bool = True,
    limit: int | None = None,
    read_clip: Callable[[Any, Path], Any] | None = None,
) -> EvalResult:
    """Stream every clip of ``data_dir`` under ``policy`` and ``budget``; ask all its questions.

    ``model`` is TinyOmni, or any streaming model with its ``read_clip(model, path)`` (e.g.
    Qwen2.5-Omni's thinker with :func:`~omnimem_ref.model.qwen_omni.loading.read_thinker_stream`,
    which answers the same questions by their option letters)."""
    make_policy(policy)  # refuse an unknown name before any work
    read = read_clip or read_stream
    by_clip = group_by_clip(load_dataset(data_dir)[0])
    clips = sorted(by_clip)[:limit]
    prompt = len(model.prompt_format(tokenizer).prompt_ids())
    predictions, peak, too_big = [], 0, 0
    for clip_name in tqdm(clips, disable=not progress, desc=f"eval {policy}"):
        inputs = read(model, Path(data_dir) / f"{clip_name}.mp4")
        full_tokens = stream_tokens(prompt, inputs.n_steps, inputs.tokens_per_step)
        tokens = None if budget is None else budget.resolve(full_tokens)
        too_big += tokens is not None and tokens >= full_tokens
        session = StreamingSession(model, tokenizer, make_policy(policy), tokens)
        reports = session.stream(inputs)
        peak = max(peak, max(r.peak_tokens for r in reports))
        for q in by_clip[clip_name]:
            answer = session.answer(q.question, q.options)
            predictions.append({**q.to_dict(), "prediction": answer.choice})
    return _summarise(model, policy, budget, predictions, peak, too_big)


def group_by_clip(questions: list[Question]) -> dict[str, list[Question]]:
    """Questions grouped by the clip they are about."""
    grouped: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        grouped[q.clip].append(q)
    return grouped


def load_stream(model: TinyOmniModel, data_dir: str | Path, clip_name: str) -> ClipStream:
    """The stream of clip ``clip_name`` of a dataset folder."""
    return read_stream(model, Path(data_dir) / f"{clip_name}.mp4")


def read_stream(model: TinyOmniModel, video: str | Path) -> ClipStream:
    """Open a clip file as the model's stream, decoded a chunk at a time as it is streamed
    (warning if it is longer than the model was trained on). For every step's inputs at once,
    use ``StreamInputs.from_arrays`` on :func:`~omnimem_ref.media.load_clip`."""
    stream = ClipStream(video, model.config.feature_spec)
    warn_if_longer_than_trained(model, stream.duration)
    return stream


def warn_if_longer_than_trained(model: TinyOmniModel, seconds: float) -> None:
    trained = model.config.max_seconds
    if seconds > trained:
        warnings.warn(
            f"This clip lasts {seconds:g} s but the model was trained on clips up to "
            f"{trained:g} s; answers may be unreliable.",
            stacklevel=2,
        )


def _summarise(
    model: TinyOmniModel,
    policy: str,
    budget: Budget | None,
    predictions: list[dict],
    peak: int,
    too_big: int,
) -> EvalResult:
    hits: dict[str, list[bool]] = defaultdict(list)
    for p in predictions:
        hits[p["family"]].append(p["prediction"] == p["answer"])
    every = [h for family in hits.values() for h in family]
    return EvalResult(
        policy=policy,
        budget=None if budget is None else str(budget),
        n=len(every),
        accuracy=sum(every) / max(1, len(every)),
        by_family={f: sum(hits[f]) / len(hits[f]) for f in ALL_FAMILIES if hits[f]},
        peak_kv_tokens=peak,
        peak_kv_bytes=peak * kv_bytes_per_token(model),
        budget_exceeds_stream=too_big,
        predictions=predictions,
    )
