"""From pixels and samples to the vectors the model's encoders read.

The same functions serve training (scenes rendered to arrays) and inference (frames decoded from
files), so the model sees identical inputs either way; only the video codec's noise differs.

- Visual: one frame per ``step_seconds`` (at the step's midpoint), resized to ``frame_size``
  and cut into ``grid x grid`` patches, each flattened: ``grid**2`` visual tokens per step.
- Audio: a log-mel spectrogram; ``audio_tokens_per_step`` tokens per step, each the flattened
  mel frames of its window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache

import librosa
import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class FeatureSpec:
    """How a clip is cut into tokens. Stored in the model config so a checkpoint knows it."""

    step_seconds: float = 2.0
    frame_size: int = 64
    grid: int = 4
    sample_rate: int = 16000
    n_mels: int = 32
    n_fft: int = 2048
    hop_length: int = 1600  # 0.1 s
    audio_tokens_per_step: int = 2

    @property
    def visual_tokens_per_step(self) -> int:
        return self.grid * self.grid

    @property
    def tokens_per_step(self) -> int:
        """Tokens one step adds to the stream: its frame's patches, then its audio tokens."""
        return self.visual_tokens_per_step + self.audio_tokens_per_step

    @property
    def patch_dim(self) -> int:
        side = self.frame_size // self.grid
        return side * side * 3

    @property
    def mel_frames_per_token(self) -> int:
        samples = self.step_seconds * self.sample_rate / self.audio_tokens_per_step
        return int(round(samples / self.hop_length))

    @property
    def audio_dim(self) -> int:
        return self.mel_frames_per_token * self.n_mels

    def n_steps(self, duration: float) -> int:
        """Whole steps in a clip; a trailing partial step is dropped."""
        return int(duration // self.step_seconds)

    def frame_times(self, duration: float) -> np.ndarray:
        """The instants frames are sampled at: the midpoint of each step."""
        return (np.arange(self.n_steps(duration)) + 0.5) * self.step_seconds

    def to_dict(self) -> dict:
        return asdict(self)


def stream_tokens(prefix: int, n_steps: int, tokens_per_step: int) -> int:
    """Tokens of a whole stream, i.e. the memory of ``full`` at its end: the prompt prefix
    (``prefix`` tokens, e.g. :func:`~omnimem_ref.model.tokenizer.prompt_length`), then
    ``n_steps`` steps of ``tokens_per_step`` tokens (:attr:`FeatureSpec.tokens_per_step`, or
    :attr:`~omnimem_ref.streaming.stream.StreamInputs.tokens_per_step`). The one place this sum
    is written; a budget given as a fraction is a fraction of it."""
    return prefix + n_steps * tokens_per_step


def resize_frames(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames of any size -> float (T, size, size, 3) in 0..255.

    Anti-aliased bilinear resizing, so a 1080p frame and a 128-pixel one give the same picture.
    Non-square frames are squashed to a square, as the model has no notion of aspect ratio.
    """
    x = torch.as_tensor(np.asarray(frames)).float().permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x.permute(0, 2, 3, 1)


def frame_patches(frames: np.ndarray | torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Frames -> (T, grid*grid, patch_dim) patches, row-major over the grid, scaled to [-1, 1].

    Patch ``p`` of a frame covers grid cell ``(p // grid, p % grid)``, the same cells the
    synthetic world places its objects in.
    """
    x = resize_frames(frames, spec.frame_size) / 127.5 - 1.0
    t, g, side = x.shape[0], spec.grid, spec.frame_size // spec.grid
    x = x.reshape(t, g, side, g, side, 3).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(t, g * g, side * side * 3)


def log_mel(waveform: np.ndarray, spec: FeatureSpec, center: bool = True) -> np.ndarray:
    """Log-mel spectrogram (n_frames, n_mels) in dB, shifted and scaled to order-one values.

    Frame ``f`` is centred on sample ``f * hop_length`` (librosa pads ``n_fft // 2`` zeros at each
    end). ``center=False`` starts the first frame at the first sample instead: for a window that
    already carries those ``n_fft // 2`` samples of context (:func:`audio_window`).
    """
    mel = librosa.feature.melspectrogram(
        y=np.asarray(waveform, dtype=np.float32),
        sr=spec.sample_rate,
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        n_mels=spec.n_mels,
        fmax=spec.sample_rate / 2,
        center=center,
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    return ((db + 15.0) / 20.0).T.astype(np.float32)  # background noise near 0, tones 1..2


def audio_tokens(waveform: np.ndarray, spec: FeatureSpec, n_steps: int) -> torch.Tensor:
    """Waveform -> (n_steps, audio_tokens_per_step, audio_dim) audio token inputs.

    Token ``j`` of step ``k`` covers the mel frames of its window; a waveform shorter than the
    steps asked for is padded with silence.
    """
    per_token = spec.mel_frames_per_token
    n_tokens = n_steps * spec.audio_tokens_per_step
    mel = log_mel(waveform, spec)
    needed = n_tokens * per_token
    if mel.shape[0] < needed:
        mel = np.concatenate([mel, np.repeat(_silence(spec), needed - mel.shape[0], axis=0)])
    x = torch.from_numpy(mel[:needed]).reshape(n_steps, spec.audio_tokens_per_step, -1)
    return x


def audio_window(steps: range, spec: FeatureSpec) -> tuple[int, int]:
    """Samples ``[start, stop)`` that the mel frames of ``steps``' audio tokens read.

    The frames are centred (:func:`log_mel`), so the window reaches ``n_fft // 2`` samples past
    the first and last frame's centre, and past either end of the clip (read those as silence,
    as librosa's padding does). Computed with ``center=False``, the window gives exactly those
    frames: what a stream read a chunk at a time needs to match the whole-clip spectrogram.
    """
    per_step = spec.audio_tokens_per_step * spec.mel_frames_per_token
    first, last = steps.start * per_step, steps.stop * per_step - 1
    half = spec.n_fft // 2
    return first * spec.hop_length - half, last * spec.hop_length + half


def window_audio_tokens(
    window: np.ndarray, steps: range, spec: FeatureSpec, clip_samples: int | None
) -> torch.Tensor:
    """(len(steps), audio_tokens_per_step, audio_dim) from the samples of :func:`audio_window`:
    what :func:`audio_tokens` of the whole clip gives for ``steps`` (to float rounding).

    ``clip_samples``, the clip's length, marks the frames the whole clip's spectrogram does not
    have (past its last centred frame), which :func:`audio_tokens` pads with silence; ``None``
    when the clip is known to run past the window.
    """
    mel = log_mel(window, spec, center=False)
    if clip_samples is not None:
        first = steps.start * spec.audio_tokens_per_step * spec.mel_frames_per_token
        past_the_clip = max(0, 1 + clip_samples // spec.hop_length - first)
        if past_the_clip < len(mel):
            mel[past_the_clip:] = _silence(spec)
    return torch.from_numpy(mel).reshape(len(steps), spec.audio_tokens_per_step, -1)


@cache
def _silence(spec: FeatureSpec) -> np.ndarray:
    """(1, n_mels): the log-mel frame of silence."""
    return log_mel(np.zeros(spec.n_fft, np.float32), spec)[:1]
