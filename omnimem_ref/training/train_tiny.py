"""Training TinyOmni from scratch on freshly generated clips.

Each step draws new scenes (never the same clip twice), so there is no overfitting to a fixed set
and no dataset to ship. Clip durations follow a curriculum: short clips first (they learn fastest),
then the whole documented range up to ``max_seconds``; the batch size shrinks as clips get longer
so every step costs about the same. Batches are rendered in background worker processes
(``workers``) while the model trains on earlier ones.

The loss (``objective.py``) has three parts: the answers; dense per-token probe targets; and
evidence supervision (``evidence.py``), which teaches each question where to look. Without the
last, the answers stayed near chance for the first thousand steps (a 1,200-step CPU run reached
52% on held-out clips); with it, the same model reaches 100% on training streams within 4,000
steps (``results/train_tiny_gpu.log.jsonl``).

Worlds and long streams. ``world`` picks the preset clips and questions come from (``classic``,
the default and the shipped checkpoint's, or ``hard``; ``docs/world.md``); the accuracy log has
one entry per family that world asks (``families`` keeps only some of them, for short checks).
``stretch_share`` of the batches stand for clips up to ``stretch_seconds`` long
(``batches.stretched``), and ``time_periods`` / ``time_ramp`` choose the time features, so a
model trained on two-minute clips can answer over an hour (``docs/training.md`` says why and
how). Every one of these is part of the ``TrainConfig`` that ``training.json`` keeps,
so resuming with a different one is refused like any other setting.

Resuming. A long CPU run can be split into several sittings. Every ``checkpoint_every`` steps
(``--save-every``) the output folder ``DIR`` is rewritten as a whole, and holds all it takes to
continue exactly where it stopped::

    DIR/model.safetensors, config.json, tokenizer.json   the model at that step
    DIR/training.json        the TrainConfig, the ``step`` (steps done) and the log so far
    DIR/resume/trainer.pt    AdamW's state, torch's CPU RNG state (and CUDA's, on a GPU)
    DIR/resume/state.json    the batch stream's position (each worker's numpy Generator state:
                             restored, not replayed, see ``StreamPosition``), the accuracy
                             window since the last log entry, the seconds spent so far

Nothing else draws random numbers (python's ``random`` is not used).

``train_tiny(..., resume=True)`` (``omnimem train-tiny --resume DIR``) loads them and trains on
to ``config.steps``: the result is bit for bit the run that never stopped (same settings, and
the same device and torch threads). The new folder is written beside the old one (``DIR.tmp``)
and swapped in by renames, so an interruption leaves one whole checkpoint, never a mixture. The
final checkpoint has no ``resume/``: it is a finished model, and resuming it says so.

Warm starts. ``init_from`` (``--init-from CKPT``) starts a new run at a finished checkpoint's
weights instead of a random model, with a fresh optimiser and a new warm-up and cosine
(``warm_model``): a second schedule for a model still learning when its first one ended.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm
from transformers import PretrainedConfig
from transformers.utils import logging as hf_logging

from omnimem_ref.errors import OmniMemError
from omnimem_ref.features import FeatureSpec
from omnimem_ref.files import recover_folder, replace_folder, sibling
from omnimem_ref.model.checkpoint import load_model
from omnimem_ref.model.configuration import (
    DEFAULT_TIME_PERIODS,
    TinyOmniConfig,
    tiny_text_config,
)
from omnimem_ref.model.modeling import TinyOmniModel
from omnimem_ref.model.tokenizer import build_tokenizer, prompt_length
from omnimem_ref.training.batches import Batch, make_batch, stretch_factor, stretched
from omnimem_ref.training.objective import COUNT_TARGETS, LossReport, compute_loss
from omnimem_ref.world.presets import World, check_world, preset

RESUME_FOLDER = "resume"
TRAINER_FILE = "trainer.pt"
STATE_FILE = "state.json"
# Settings a resumed run may change: they decide when to save, not what is learnt.
FREE_ON_RESUME = ("checkpoint_every",)


@dataclass
class TrainConfig:
    """A training run's settings. The defaults are the shipped checkpoint's recipe (classic world,
    nothing stretched, the original time features); ``scripts/train_on_gpu.sh`` holds the
    hard-world, long-stream recipe (``docs/training.md``)."""

    steps: int = 6000
    seed: int = 0
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    clips_per_batch_at_40s: int = 16  # batch size scales as 40 s / duration
    min_seconds: float = 16.0
    max_seconds: float = 120.0
    curriculum_seconds: float = 64.0  # longest clip during the first half
    # In the second half, this share of the steps still draws up to ``curriculum_seconds``: a
    # schedule on long clips that keeps showing the short ones it must not forget.
    short_share: float = 0.0
    probe_weight: float = 1.0
    evidence_weight: float = 1.0  # attention supervision towards each question's evidence
    workers: int = 1  # background processes rendering batches
    log_every: int = 25
    checkpoint_every: int = 250  # saves what resuming needs too (module docstring)
    world: str = "classic"  # the preset clips and questions are drawn from (world/presets.py)
    families: tuple[str, ...] = ()  # the world's question families asked in training; (): all
    # Long streams (docs/training.md): this share of batches stands for clips up to
    # ``stretch_seconds`` long (training/batches.py, ``stretched``)...
    stretch_share: float = 0.0
    stretch_seconds: float = 3600.0
    # ...and the model's time features (model/modeling.py, ``time_features``).
    time_periods: tuple[float, ...] = DEFAULT_TIME_PERIODS
    time_ramp: bool = True
    time_log: bool = False  # add the log time feature (model/modeling.py, ``time_features``)
    question_time: bool = False  # questions carry the time they are asked at
    # What counting questions' attention is supervised towards (objective.py, ``COUNT_TARGETS``)
    count_target: str = "instances"
    # How many times the counting questions' part of that supervision weighs (spread targets).
    count_boost: float = 1.0
    # The backbone's size (model/configuration.py, ``tiny_text_config``): heads of 32 dimensions.
    layers: int = 4
    width: int = 128
    # Patch tokens see the patches around them (model/modeling.py, ``FrameContext``).
    frame_context: bool = False
    # A warm start: the checkpoint folder whose weights step 0 starts from ("": a random model).
    # The optimiser and the learning-rate schedule start afresh (``warm_model``).
    init_from: str = ""

    def __post_init__(self) -> None:
        # training.json stores the periods as a JSON list; a tuple compares equal on resume.
        self.time_periods = tuple(float(p) for p in self.time_periods)
        self.families = tuple(self.families)
        if self.count_target not in COUNT_TARGETS:
            raise OmniMemError(
                f"--count-target must be one of {', '.join(COUNT_TARGETS)}, "
                f"got {self.count_target!r}."
            )

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> TrainConfig:
        """The config a ``training.json`` recorded. Keys it lacks take today's defaults (the
        defaults of its day); runs saved before ``count_target`` existed recorded it as three
        flags, each implying the one before (``legacy_count_target``)."""
        saved = dict(saved)
        legacy = {k: bool(saved.pop(k, False)) for k in LEGACY_COUNT_FLAGS}
        if any(legacy.values()):
            saved["count_target"] = legacy_count_target(**legacy)
        return cls(**saved)

    @property
    def longest_seconds(self) -> float:
        """The latest stream time training shows the model (stretched batches included): the
        ``max_seconds`` its model config records."""
        if self.stretch_share > 0:
            return max(self.max_seconds, self.stretch_seconds)
        return self.max_seconds


LEGACY_COUNT_FLAGS = ("count_onsets", "count_spread", "spread_per_head")


def legacy_count_target(count_onsets: bool, count_spread: bool, spread_per_head: bool) -> str:
    """``count_target`` for the three flags older runs saved (``spread_per_head`` did nothing
    without ``count_spread``; ``count_spread`` implied ``count_onsets``)."""
    if count_spread:
        return "spread-per-head" if spread_per_head else "spread"
    return "onsets" if count_onsets else "instances"


def duration_for_step(config: TrainConfig, step: int, rng: np.random.Generator) -> float:
    """A clip length for ``step``: up to ``curriculum_seconds`` in the first half of the run,
    up to ``max_seconds`` after (never past it, however short ``max_seconds`` is), but for a
    ``short_share`` of the second half's steps, which stay at the first half's lengths."""
    curriculum = min(config.curriculum_seconds, config.max_seconds)
    longest = curriculum if step < config.steps // 2 else config.max_seconds
    if config.short_share > 0 and longest > curriculum and rng.random() < config.short_share:
        longest = curriculum  # drawn only when asked for: older runs' batches stay the same
    return float(rng.uniform(config.min_seconds, longest))


def batch_size_for(config: TrainConfig, duration: float) -> int:
    return max(2, round(config.clips_per_batch_at_40s * 40.0 / duration))


RngState = Mapping[str, Any]  # a numpy Generator's ``bit_generator.state``


@dataclass
class StreamItem:
    """One step's batch, with the state of the Generator that drew it, after drawing it: where
    that Generator goes on (``StreamPosition``)."""

    step: int
    batch: Batch
    rng_state: RngState


@dataclass(frozen=True)
class StreamPosition:
    """Where the batch stream stands between two steps: the next step to train on, and the
    state of each of the stream's Generators (one per worker: step ``s`` draws from Generator
    ``s % workers``) just before it draws its next batch for training.

    Workers render ahead of training (they prefetch), so their live Generators are already past
    that point. Rendering is most of a step's cost, so resuming does not replay the stream
    either: each batch brings its Generator's state back with it (``StreamItem``), and the
    position keeps, per Generator, the state after the last of its batches training has used."""

    next_step: int
    rng_states: tuple[RngState, ...]

    @classmethod
    def start(cls, config: TrainConfig) -> StreamPosition:
        """Step 0, with Generator ``g`` seeded from (seed, 1, g)."""
        seeded = [np.random.default_rng([config.seed, 1, g]) for g in range(config.workers)]
        return cls(0, tuple(rng.bit_generator.state for rng in seeded))

    def after(self, item: StreamItem) -> StreamPosition:
        """The position once training has used ``item``, the batch of ``next_step``."""
        if item.step != self.next_step:
            raise RuntimeError(f"batch of step {item.step} arrived at step {self.next_step}")
        states = list(self.rng_states)
        states[item.step % len(states)] = item.rng_state
        return StreamPosition(self.next_step + 1, tuple(states))


class SyntheticBatches(IterableDataset):
    """A seeded stream of training batches (one per step, up to ``config.steps``), from
    ``position`` on (default: the start)."""

    def __init__(
        self, config: TrainConfig, spec: FeatureSpec, position: StreamPosition | None = None
    ) -> None:
        self.config, self.spec = config, spec
        self.position = position or StreamPosition.start(config)

    def __iter__(self) -> Iterator[StreamItem]:
        """Step ``s`` is always drawn from Generator ``s % n`` (of ``n`` workers), so a run is
        reproducible for a given seed and number of workers. The loader takes one batch from
        each worker in turn, starting with worker 0: so from step ``k`` on, worker ``w`` renders
        steps k + w, k + w + n, ... with Generator (k + w) % n, and the batches come back in step
        order. Workers draw from nothing else (the loader seeds torch's and python's RNGs in each
        worker afresh at every sitting)."""
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        first = self.position.next_step + worker
        rng = np.random.default_rng()
        rng.bit_generator.state = self.position.rng_states[first % n_workers]
        tokenizer = build_tokenizer()
        config, world = self.config, training_world(self.config)
        for step in range(first, config.steps, n_workers):
            duration = duration_for_step(config, step, rng)
            size = batch_size_for(config, duration)
            batch = make_batch(rng, tokenizer, self.spec, size, duration, world=world)
            factor = stretch_factor(rng, duration, config.stretch_share, config.stretch_seconds)
            yield StreamItem(step, stretched(batch, factor), rng.bit_generator.state)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def position_range(config: TrainConfig, spec: FeatureSpec, prompt: int) -> int:
    """The rotary positions training reaches, rounded up to a power of two and at least the
    shipped 4,096: the prompt, the longest stream's tokens (18 a step), and a question (at most
    64 tokens). An hour is 32,768 (docs/training.md)."""
    needed = prompt + spec.tokens_per_step * spec.n_steps(config.longest_seconds) + 64
    return max(4096, 1 << (needed - 1).bit_length())


def model_config(config: TrainConfig) -> TinyOmniConfig:
    """The model ``config`` trains: its time features, ``max_seconds`` the latest stream time it
    will be trained on and ``max_position_embeddings`` the positions that reaches (for the
    reader: plain RoPE computes any position, and transformers reads this number only to rescale
    RoPE, which TinyOmni does not)."""
    tokenizer = build_tokenizer()
    positions = position_range(config, FeatureSpec(), prompt_length(tokenizer))
    return TinyOmniConfig(
        text_config=tiny_text_config(
            tokenizer.get_vocab_size(),
            layers=config.layers,
            width=config.width,
            max_position_embeddings=positions,
        ),
        max_seconds=config.longest_seconds,
        time_periods=list(config.time_periods),
        time_ramp=config.time_ramp,
        time_log=config.time_log,
        question_time=config.question_time,
        frame_context=config.frame_context,
    )


def new_model(config: TrainConfig) -> TinyOmniModel:
    """A freshly initialised TinyOmni, seeded by ``config.seed``."""
    torch.manual_seed(config.seed)
    return TinyOmniModel(model_config(config))


# Keys of a model's config.json that say how it was saved, not what it is.
SAVE_ONLY_KEYS = ("transformers_version", "_name_or_path", "architectures", "torch_dtype", "dtype")


def model_settings(config: PretrainedConfig) -> dict[str, Any]:
    """``config`` as flat ``{"time_log": ..., "text_config.hidden_size": ...}``, without the keys
    that only say how it was saved."""
    flat: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        if key == "text_config":
            flat.update({f"{key}.{k}": v for k, v in value.items() if k not in SAVE_ONLY_KEYS})
        elif key not in SAVE_ONLY_KEYS:
            flat[key] = value
    return flat


def warm_model(config: TrainConfig) -> TinyOmniModel:
    """The model saved in ``config.init_from``, to train on with a fresh optimiser and schedule.

    Why: a run ends where its cosine schedule reaches 5% of the peak, and the hard checkpoint's
    families were still climbing there (docs/training.md). A warm start gives such a model a new
    schedule without the hours its first one took. The run must build the very model it starts
    from (same shape, same time features), or the weights would not mean what they meant."""
    model, _ = load_model(config.init_from)
    wanted, found = model_settings(model_config(config)), model_settings(model.config)
    differing = sorted(k for k in set(wanted) | set(found) if wanted.get(k) != found.get(k))
    if differing:
        raise OmniMemError(
            f"The model in {config.init_from} differs from the one these settings train in "
            f"{', '.join(differing)}; leave out the options that change the model's shape or "
            "time features (a warm start takes them from the checkpoint's training.json)."
        )
    torch.manual_seed(config.seed)
    return model


@dataclass
class Run:
    """What a training run carries from one step to the next: all that resuming restores."""

    config: TrainConfig
    model: TinyOmniModel
    optimizer: torch.optim.Optimizer
    position: StreamPosition  # the batch stream; ``position.next_step`` is the steps done
    window: dict[str, list[bool]]  # each family's hits and misses since the last log entry
    log: list[dict]
    clock: float  # when the run would have started (time.time()), had it never stopped

    @property
    def step(self) -> int:
        return self.position.next_step


def training_world(config: TrainConfig) -> World:
    """The world batches are drawn from: ``config.world``'s preset, asking only
    ``config.families`` when some are named (a short check of a few families trains faster)."""
    world = preset(config.world)
    missing = [f for f in config.families if f not in world.families]
    if missing:
        raise OmniMemError(
            f"The {config.world} world does not ask {', '.join(missing)} questions; choose "
            f"--families among {', '.join(world.families)}, or another --world."
        )
    return world.overridden(families=config.families or None)


def families(config: TrainConfig) -> tuple[str, ...]:
    """The question families training asks (classic: the four; hard: all six; or those named)."""
    return training_world(config).families


def empty_window(config: TrainConfig) -> dict[str, list[bool]]:
    """An empty accuracy window: one list of hits and misses per family the world asks."""
    return {f: [] for f in families(config)}


def make_optimizer(model: TinyOmniModel, config: TrainConfig, device: str) -> torch.optim.AdamW:
    """Move ``model`` to ``device`` in training mode, and give it a fresh AdamW."""
    torch.nn.Module.to(model, device).train()
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)


def new_run(out_dir: Path, config: TrainConfig, device: str) -> Run:
    """Step 0 of a new run, refusing to write over an unfinished one in ``out_dir``."""
    if (out_dir / RESUME_FOLDER).is_dir():
        raise OmniMemError(
            f"{out_dir} holds an unfinished run; continue it with --resume {out_dir}, "
            "or delete it or choose another --out to start afresh."
        )
    check_world(training_world(config))  # refuse an unknown world or families before any work
    model = warm_model(config) if config.init_from else new_model(config)
    optimizer = make_optimizer(model, config, device)
    start = StreamPosition.start(config)
    return Run(config, model, optimizer, start, empty_window(config), [], time.time())


def train_tiny(
    out_dir: str | Path,
    config: TrainConfig,
    device: str = "cpu",
    progress: bool = True,
    log_file: str | Path | None = None,
    resume: bool = False,
) -> list[dict]:
    """Train a new TinyOmni and save it (safetensors + tokenizer.json + log) to ``out_dir``;
    with ``resume``, continue the run saved in ``out_dir`` instead (module docstring).

    ``log_file``, if given, receives one JSON line per log entry as training goes; the
    checkpoint, with what resuming needs, is saved every ``config.checkpoint_every`` steps, so a
    long run can be inspected, or stopped and resumed, half-way. Returns the whole log.
    """
    out_dir = Path(out_dir)
    run = resume_run(out_dir, config, device) if resume else new_run(out_dir, config, device)
    if resume and log_file is not None:
        drop_entries_after(Path(log_file), run.step)
    tokenizer = build_tokenizer()
    batches = DataLoader(
        SyntheticBatches(config, run.model.config.feature_spec, run.position),
        batch_size=None,
        num_workers=config.workers,
        prefetch_factor=4,
        worker_init_fn=lambda _: torch.set_num_threads(1),
        persistent_workers=False,
        # the loader seeds its workers from this, not from (and so not moving) torch's own RNG
        generator=torch.Generator().manual_seed(config.seed),
    )
    bar = tqdm(
        batches, total=config.steps, initial=run.step, disable=not progress, desc="train-tiny"
    )
    for item in bar:
        batch = item.batch.to(device)
        report = train_step(run, tokenizer, batch, item.step)
        run.position = run.position.after(item)
        if run.step % config.log_every == 0 or run.step == config.steps:
            entry = log_entry(run, batch, report)
            run.log.append(entry)
            run.window = empty_window(config)
            bar.set_postfix(
                loss=entry["answer_loss"], **{f[:4]: a for f, a in entry["accuracy"].items()}
            )
            if log_file is not None:
                with open(log_file, "a") as f:
                    f.write(json.dumps(entry) + "\n")
        if run.step % config.checkpoint_every == 0 and run.step < config.steps:
            save_run(run, out_dir)
    save_run(run, out_dir, final=True)
    return run.log


def train_step(run: Run, tokenizer: Tokenizer, batch: Batch, step: int) -> LossReport:
    """One optimiser step on ``batch``; its answers go into the accuracy window."""
    config = run.config
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(config, step)
    report = compute_loss(
        run.model,
        tokenizer,
        batch,
        config.probe_weight,
        config.evidence_weight,
        config.count_target,
        config.count_boost,
    )
    run.optimizer.zero_grad(set_to_none=True)
    report.loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.optimizer.step()
    track_accuracy(run.window, batch, report.correct)
    return report


def log_entry(run: Run, batch: Batch, report: LossReport) -> dict:
    """The log line after ``run.step`` steps: the last batch's losses, the window's accuracy."""
    spec = run.model.config.feature_spec
    return {
        "step": run.step,
        "seconds": round(time.time() - run.clock, 1),
        "clip_seconds": round(batch.patches.shape[1] * spec.step_seconds),
        "answer_loss": round(report.answer_loss, 4),
        "probe_loss": round(report.probe_loss, 4),
        "evidence_loss": round(report.evidence_loss, 4),
        "accuracy": window_accuracy(run.window),
    }


def save_run(run: Run, out_dir: Path, final: bool = False) -> None:
    """Checkpoint ``run`` in ``out_dir``: with ``resume/``, unless it is the ``final`` one."""
    extra = {"train_config": asdict(run.config), "step": run.step, "log": run.log}
    if final:
        save_checkpoint(run.model.cpu(), out_dir, extra)
    else:
        save_checkpoint(run.model, out_dir, extra, also_write=partial(write_resume_state, run))


def write_resume_state(run: Run, checkpoint: Path) -> None:
    """Write ``resume/`` into the new ``checkpoint`` folder: what continuing needs besides the
    weights, the settings and the log (those are the checkpoint's own)."""
    folder = checkpoint / RESUME_FOLDER
    folder.mkdir()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    trainer = {
        "optimizer": run.optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": cuda_rng,
    }
    torch.save(trainer, folder / TRAINER_FILE)
    state = {
        "seconds": time.time() - run.clock,
        "rng_states": run.position.rng_states,
        "window": run.window,
    }
    (folder / STATE_FILE).write_text(json.dumps(state))


@dataclass
class SavedRun:
    """What ``training.json`` says of the run saved in a folder."""

    config: TrainConfig
    step: int
    log: list[dict]


def saved_run(out_dir: str | Path, action: str = "resume") -> SavedRun:
    """The run saved in ``out_dir`` (first putting back a checkpoint that a cut ``replace_folder``
    left aside), refusing, in one sentence, a folder that holds none (with nothing to
    ``action``)."""
    out_dir = Path(out_dir)
    recover_folder(out_dir)
    try:
        saved = json.loads((out_dir / "training.json").read_text())
        config = TrainConfig.from_saved(saved["train_config"])
        return SavedRun(config, int(saved["step"]), saved["log"])
    except (OSError, ValueError, KeyError, TypeError):
        hint = f"start one with --out {out_dir}" if action == "resume" else "pass a folder it wrote"
        raise OmniMemError(
            f"{out_dir} holds no training run to {action} (no training.json with a step, as "
            f"`omnimem train-tiny` saves); {hint}."
        ) from None


def config_differences(saved: TrainConfig, config: TrainConfig) -> list[str]:
    """The settings (but those in ``FREE_ON_RESUME``) in which ``config`` differs from ``saved``."""
    names = [f.name for f in fields(TrainConfig) if f.name not in FREE_ON_RESUME]
    return [name for name in names if getattr(saved, name) != getattr(config, name)]


def resume_run(out_dir: Path, config: TrainConfig, device: str) -> Run:
    """The run saved in ``out_dir``, ready for its next step, with torch's RNG where it was."""
    saved = saved_run(out_dir)
    differing = config_differences(saved.config, config)
    if differing:
        was = ", ".join(f"{name}={getattr(saved.config, name)!r}" for name in differing)
        now = ", ".join(f"{name}={getattr(config, name)!r}" for name in differing)
        raise OmniMemError(
            f"The run in {out_dir} was started with {was}, not {now}; resume it with its own "
            "settings."
        )
    if saved.step >= config.steps:
        raise OmniMemError(
            f"The run in {out_dir} is complete (all {config.steps} steps are done); there is "
            "nothing to resume."
        )
    folder = out_dir / RESUME_FOLDER
    if not ((folder / TRAINER_FILE).is_file() and (folder / STATE_FILE).is_file()):
        raise OmniMemError(
            f"{out_dir} holds the model at step {saved.step} but no {RESUME_FOLDER}/ state to "
            "continue from; start a new run with --out."
        )
    model, _ = load_model(out_dir)
    optimizer = make_optimizer(model, config, device)
    trainer = torch.load(folder / TRAINER_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(trainer["optimizer"])
    torch.set_rng_state(trainer["torch_rng"])
    if trainer["cuda_rng"] is not None and device.startswith("cuda"):
        torch.cuda.set_rng_state_all(trainer["cuda_rng"])
    state = json.loads((folder / STATE_FILE).read_text())
    position = StreamPosition(saved.step, tuple(state["rng_states"]))
    clock = time.time() - state["seconds"]
    return Run(config, model, optimizer, position, state["window"], saved.log, clock)


def drop_entries_after(log_file: Path, step: int) -> None:
    """Remove the entries past ``step`` (and a line cut short) from the end of ``log_file``:
    the interrupted sitting wrote them after its last save, and the resumed run logs those steps
    again."""
    if not log_file.is_file():
        return
    lines = log_file.read_text().splitlines(keepends=True)
    kept = len(lines)
    while kept and not logged_before(lines[kept - 1], step):
        kept -= 1
    if kept < len(lines):
        log_file.write_text("".join(lines[:kept]))


def logged_before(line: str, step: int) -> bool:
    """Whether ``line`` is a whole log entry for ``step`` or an earlier one."""
    try:
        return bool(json.loads(line)["step"] <= step)
    except (ValueError, KeyError, TypeError):
        return False


def save_checkpoint(
    model: TinyOmniModel,
    out_dir: Path,
    extra: dict,
    also_write: Callable[[Path], None] | None = None,
) -> None:
    """Write to a temporary sibling folder, then swap it in: never a half-written checkpoint.
    ``also_write(folder)``, if given, adds its files to the new folder before the swap."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(out_dir, ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    hf_logging.disable_progress_bar()  # a 4 MB model needs no "Writing model shards" bar
    model.save_pretrained(tmp)
    build_tokenizer().save(str(tmp / "tokenizer.json"))
    (tmp / "training.json").write_text(json.dumps(extra, indent=1))
    if also_write is not None:
        also_write(tmp)
    replace_folder(tmp, out_dir)


def track_accuracy(window: dict[str, list[bool]], batch: Batch, correct: torch.Tensor) -> None:
    """Append each answered question's hit or miss to its family's list in ``window``."""
    for clip_families, clip_correct in zip(batch.families, correct.tolist(), strict=True):
        for family, hit in zip(clip_families, clip_correct, strict=True):
            if family is not None:
                window[family].append(hit)


def window_accuracy(window: dict[str, list[bool]]) -> dict[str, float | None]:
    """Accuracy per family over the questions collected in ``window`` (None: none asked)."""
    return {f: round(float(np.mean(v)), 3) if v else None for f, v in window.items()}
