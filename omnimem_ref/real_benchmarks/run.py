"""The loop: stream each video once per policy and budget, answer its questions, log each answer.

Questions are grouped by video, so a video is decoded once and streamed once per (policy,
budget); all of its questions are then asked of that one compressed memory (the session drops a
question's tokens after answering, so every question sees the same memory). A (policy, budget)
whose questions on a video are all in the log already is skipped without decoding anything, and
every answer is in the log (:class:`~omnimem_ref.real_benchmarks.answers.AnswerLog`) before the
next question starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from omnimem_ref.benchmark.records import FULL
from omnimem_ref.benchmark.run import check_budget
from omnimem_ref.budget import Budget
from omnimem_ref.features import stream_tokens
from omnimem_ref.policies import make_policy
from omnimem_ref.real_benchmarks.answers import AnswerLog
from omnimem_ref.real_benchmarks.multiple_choice import MultipleChoice, by_video
from omnimem_ref.streaming.session import MemoryReport, StreamingSession
from omnimem_ref.streaming.stream import Stream

Run = tuple[str, Budget | None]  # a policy and its budget; full memory has none


class SizedStream(Stream, Protocol):
    """A stream that says how many tokens a step holds (both models' streams do), so a budget
    given as a fraction can be resolved before streaming."""

    @property
    def tokens_per_step(self) -> int: ...


ClipReader = Callable[[Any, Path], SizedStream]  # (model, video file) -> the clip as it reads it


@dataclass(frozen=True)
class Streaming:
    """How the session streams, the same for every video (the answer log's header keeps it)."""

    steps_per_chunk: int = 1
    slack: float = 0.0
    rotary_limit: int | None = None


def runs_of(policies: Sequence[str], budgets: Sequence[Budget]) -> list[Run]:
    """``full`` once without a budget (if asked for), every other policy at every budget."""
    runs: list[Run] = [(FULL, None)] if FULL in policies else []
    return runs + [(p, b) for b in budgets for p in policies if p != FULL]


def logged_budget(budget: Budget | None) -> str | None:
    """A run's budget as the answer log writes it (``"4096"``, ``"0.1"``; ``None`` for full)."""
    return None if budget is None else str(budget)


def run_questions(
    model: Any,
    tokenizer: Any,
    questions: Sequence[MultipleChoice],
    runs: Sequence[Run],
    read_clip: ClipReader,
    log: AnswerLog,
    streaming: Streaming = Streaming(),
    progress: bool = True,
) -> int:
    """Answer every (question, run) not yet in ``log``; return how many answers were added."""
    prefix = len(model.prompt_format(tokenizer).prompt_ids())
    added = 0
    videos = by_video(questions)
    bar = tqdm(videos.items(), disable=not progress, desc="bench", unit="video")
    for video, mine in bar:
        pending = [run for run in runs if _missing(mine, run, log)]
        if not pending:
            continue  # nothing to do: not even decoded
        stream = read_clip(model, video)
        for run in pending:
            bar.set_postfix_str(f"{run[0]} @ {run[1] or 'none'}", refresh=False)
            session, memory = _stream(model, tokenizer, stream, run, prefix, streaming, video)
            for q in _missing(mine, run, log):
                log.append(_answer(session, q, *run, memory))
                added += 1
    bar.close()
    return added


def _stream(
    model: Any,
    tokenizer: Any,
    stream: SizedStream,
    run: Run,
    prefix: int,
    streaming: Streaming,
    video: Path,
) -> tuple[StreamingSession, dict[str, Any]]:
    """Stream one video under one policy and budget: the session (to ask questions of) and what
    its memory cost."""
    policy, budget = run
    full_tokens = stream_tokens(prefix, stream.n_steps, stream.tokens_per_step)
    tokens = None if budget is None else budget.resolve(full_tokens)
    if tokens is not None:
        check_budget(budget, tokens, prefix, video.name)
    session = StreamingSession(
        model,
        tokenizer,
        make_policy(policy),
        tokens,
        steps_per_chunk=streaming.steps_per_chunk,
        slack=streaming.slack,
        rotary_limit=streaming.rotary_limit,
    )
    return session, _memory(session.stream(stream), tokens, full_tokens)


def _missing(questions: list[MultipleChoice], run: Run, log: AnswerLog) -> list[MultipleChoice]:
    policy, budget = run
    return [q for q in questions if (q.id, policy, logged_budget(budget)) not in log.done]


def _memory(reports: list[MemoryReport], tokens: int | None, full_tokens: int) -> dict[str, Any]:
    """What one streamed video cost: the budget, the peak, what was kept, and the times."""
    return {
        "stream_tokens": full_tokens,
        "budget_tokens": full_tokens if tokens is None else tokens,
        "peak_tokens": max(r.peak_tokens for r in reports),
        "kept_tokens": reports[-1].tokens,
        "compressions": sum(r.compressed for r in reports),
        "prefill_seconds": sum(r.prefill_seconds for r in reports),
        "compress_seconds": sum(r.compress_seconds for r in reports),
    }


def _answer(
    session: StreamingSession,
    q: MultipleChoice,
    policy: str,
    budget: Budget | None,
    memory: dict[str, Any],
) -> dict[str, Any]:
    """One answer log line: the question, the model's letter, and the memory it answered from."""
    answer = session.answer(q.question, list(q.options.values()))
    probabilities = {letter: answer.probabilities[text] for letter, text in q.options.items()}
    prediction = q.letter_of(answer.choice)
    return {
        "question": q.id,
        "policy": policy,
        "budget": logged_budget(budget),
        "video": q.video.name,
        "answer": q.answer,
        "prediction": prediction,
        "correct": prediction == q.answer,
        "task_types": list(q.task_types),
        "details": q.details,
        "time_reference": q.time_reference,
        "probabilities": probabilities,
        **memory,
    }
