"""What the thinker reads of a clip: frame pairs as packed patches, and a log-mel spectrogram.

The Qwen2.5-Omni processor needs torchvision for video, which does not load beside the CPU torch
wheel, so frames are prepared here with torch alone, following Qwen2-VL's published rule:

1. frames at 2 per second, resized (bicubic) to a height and width that are multiples of 28
   (patch 14 x merge 2), keeping the aspect ratio and the pixel count within
   ``[min_pixels, max_pixels]`` (:func:`frame_size`);
2. scaled to [0, 1] and normalised with CLIP's mean and standard deviation;
3. cut into 14 x 14 patches two frames deep (``temporal_patch_size``), packed so that the four
   patches one merged token is made of are consecutive (:func:`pack_frames`).

Audio: a Whisper log-mel spectrogram (128 bins, 100 frames per second) computed over the whole
clip and then sliced into 200-frame (2-second) pieces. Computing it per 2-second piece instead
gives different numbers: the STFT sees the piece's edges, and the clamp at the maximum − 8 dB
depends on the window's loudest frame. The audio encoder itself works in 200-frame pieces, so a
slice encodes exactly as it would inside the whole clip. A stream read a chunk at a time gets the
whole clip's frames from :func:`mel_window` (the samples a chunk's frames read, with the clip's
reflected edges), :func:`log_mel_power` and :func:`scale_log_mel` (the clamp at the whole clip's
loudest frame, which it finds first).

A 2-second step is two frame pairs (video tokens) then 50 audio tokens, as the thinker interleaves
a video with its audio track; a clip is cut to whole steps. :class:`ThinkerSteps` turns a chunk's
pixels and log-mel into tokens, whoever holds them: :class:`ThinkerStream` (the whole clip in
memory) or :class:`~omnimem_ref.model.qwen_omni.clip_stream.ThinkerClipStream` (read from a file a
chunk at a time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from omnimem_ref.core import AUDIO, VISUAL, Chunk, StreamingModel, TokenMeta
from omnimem_ref.model.qwen_omni.positions import audio_positions, video_positions

FRAMES_PER_SECOND = 2.0
SAMPLE_RATE = 16_000
STEP_SECONDS = 2.0  # the thinker config's seconds_per_chunk
FRAMES_PER_STEP = int(STEP_SECONDS * FRAMES_PER_SECOND)  # 4 frames: two frame pairs
MEL_FRAMES_PER_STEP = 200  # 100 per second (hop 160 at 16 kHz); the audio encoder's window
SAMPLES_PER_STEP = int(STEP_SECONDS * SAMPLE_RATE)  # 32,000
N_FFT, HOP = 400, 160  # Whisper's STFT: 25-ms Hann windows, 10 ms apart
LOG_MEL_RANGE = 8.0  # Whisper keeps 8 log10 units (80 dB) below the clip's loudest value
AUDIO_TOKENS_PER_SECOND = 25  # 100 mel frames, halved by a strided convolution, then pooled
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionSettings:
    """How frames become patches; defaults are Qwen2.5-Omni's published video settings."""

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 768 * 28 * 28

    @property
    def factor(self) -> int:
        """Height and width are multiples of this: one merged token's side in pixels."""
        return self.patch_size * self.merge_size


def frame_size(height: int, width: int, settings: VisionSettings) -> tuple[int, int]:
    """Qwen2-VL's ``smart_resize``: the nearest multiples of ``factor``, rescaled (aspect ratio
    kept) into ``[min_pixels, max_pixels]``."""
    f = settings.factor
    h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
    if h * w > settings.max_pixels:
        beta = math.sqrt(height * width / settings.max_pixels)
        h = max(f, math.floor(height / beta / f) * f)
        w = max(f, math.floor(width / beta / f) * f)
    elif h * w < settings.min_pixels:
        beta = math.sqrt(settings.min_pixels / (height * width))
        h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    return h, w


def pack_frames(
    frames: np.ndarray, settings: VisionSettings
) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 frames (n, H, W, 3), n a multiple of ``temporal_patch_size`` -> (pairs, patches,
    3 · temporal · patch²) float32 patches and the grid (rows, cols) of patches per frame.

    Patch order inside a frame pair: merged cells row by row, and inside a cell its
    ``merge x merge`` patches row by row, which is what the vision encoder's merger expects.
    """
    p, m, tp = settings.patch_size, settings.merge_size, settings.temporal_patch_size
    height, width = frame_size(frames.shape[1], frames.shape[2], settings)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(
        x, size=(height, width), mode="bicubic", align_corners=False, antialias=True
    ).clamp(0, 255)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = (x / 255 - mean) / std
    pairs, rows, cols = x.shape[0] // tp, height // p, width // p
    x = x.reshape(pairs, tp, 3, rows // m, m, p, cols // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # pair, cell row, cell col, m, m, C, tp, p, p
    return x.reshape(pairs, rows * cols, 3 * tp * p * p), (rows, cols)


def log_mel(waveform: np.ndarray, n_steps: int, n_mels: int = 128) -> torch.Tensor:
    """(n_mels, n_steps · 200) Whisper log-mel of a 16 kHz waveform, computed over the whole
    waveform (cut or padded with silence to ``n_steps`` whole steps) so that slices match."""
    samples = n_steps * SAMPLES_PER_STEP
    wave = np.zeros(samples, dtype=np.float32)
    wave[: min(samples, len(waveform))] = waveform[:samples]
    features = whisper_features(n_mels)(
        wave, sampling_rate=SAMPLE_RATE, padding="longest", truncation=False, return_tensors="np"
    )["input_features"][0]
    return torch.from_numpy(features[:, : n_steps * MEL_FRAMES_PER_STEP].copy())


@cache
def whisper_features(n_mels: int) -> WhisperFeatureExtractor:
    """Qwen2.5-Omni's audio feature extractor (built once per bin count: its mel filters)."""
    return WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=SAMPLE_RATE)


def mel_window(steps: range) -> tuple[int, int]:
    """Samples ``[start, stop)`` that the log-mel frames of ``steps`` read.

    :func:`log_mel` frame ``f`` is centred on sample ``f · HOP`` and reads
    ``[f · HOP − N_FFT/2, f · HOP + N_FFT/2)``; the frames of steps ``[s0, s1)`` are
    ``f = 200 · s0 … 200 · s1 − 1``, so they read

        start = 200 · s0 · HOP − N_FFT/2        = 32000 · s0 − 200
        stop  = (200 · s1 − 1) · HOP + N_FFT/2  = 32000 · s1 + 40

    (an STFT without centring over these samples gives exactly those frames). Past either end
    of the clip's ``n_steps · 32000`` samples, Whisper's STFT reads the clip reflected about its
    first or last sample (``reflect`` padding): see :func:`reflect_edges`.
    """
    half = N_FFT // 2
    start = steps.start * MEL_FRAMES_PER_STEP * HOP - half
    stop = (steps.stop * MEL_FRAMES_PER_STEP - 1) * HOP + half
    return start, stop


def reflect_edges(inside: np.ndarray, start: int, stop: int, clip_samples: int) -> np.ndarray:
    """The samples ``[start, stop)`` of :func:`mel_window`, from ``inside`` (those within
    ``[0, clip_samples)``): outside the clip, the clip mirrored about its end samples, as
    ``torch.stft``'s centring pads it (``x[-k] = x[k]``, ``x[n - 1 + k] = x[n - 1 - k]``)."""
    before, after = max(0, -start), max(0, stop - clip_samples)
    return np.pad(inside, (before, after), mode="reflect")


def log_mel_power(window: np.ndarray, n_mels: int) -> torch.Tensor:
    """(n_mels, frames) log10 mel power of a :func:`mel_window`'s samples, one frame per ``HOP``
    from the window's first sample (no centring), before Whisper's clamp: what
    ``WhisperFeatureExtractor`` computes for those frames of the whole clip."""
    wave = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))
    stft = torch.stft(
        wave.unsqueeze(0),
        N_FFT,
        HOP,
        window=torch.hann_window(N_FFT),
        center=False,
        return_complex=True,
    )[0]
    filters = torch.from_numpy(whisper_features(n_mels).mel_filters).float()
    return torch.clamp(filters.T @ (stft.abs() ** 2), min=1e-10).log10()


def scale_log_mel(log_power: torch.Tensor, ceiling: float) -> torch.Tensor:
    """Whisper's last two steps: clamp at ``ceiling`` − 8 (``ceiling``: the whole clip's largest
    :func:`log_mel_power` value), then ``(x + 4) / 4``."""
    return (torch.clamp(log_power, min=ceiling - LOG_MEL_RANGE) + 4.0) / 4.0


def frame_times(n_steps: int) -> np.ndarray:
    """Times of the frames read: 2 per second, each in the middle of its half second."""
    return (np.arange(n_steps * FRAMES_PER_STEP) + 0.5) / FRAMES_PER_SECOND


class ThinkerSteps:
    """What a thinker stream derives from its vision settings, patch grid and number of steps
    (tokens per step, the seconds of a frame pair), and how a chunk's pixels and log-mel become
    its tokens. Shared by :class:`ThinkerStream` (every step's inputs in memory) and
    :class:`~omnimem_ref.model.qwen_omni.clip_stream.ThinkerClipStream` (read from a file a
    chunk at a time), which supply :meth:`step_inputs`."""

    settings: VisionSettings
    grid: tuple[int, int]  # (rows, cols) of patches per frame

    @property
    def n_steps(self) -> int:
        raise NotImplementedError

    def step_inputs(self, steps: range) -> tuple[torch.Tensor, torch.Tensor]:
        """``steps``' packed frame pairs (pairs, patches, patch_dim) and log-mel (bins,
        len(steps) · 200)."""
        raise NotImplementedError

    @property
    def step_seconds(self) -> float:
        return STEP_SECONDS

    @property
    def pairs_per_step(self) -> int:
        return FRAMES_PER_STEP // self.settings.temporal_patch_size

    @property
    def seconds_per_pair(self) -> float:
        return self.settings.temporal_patch_size / FRAMES_PER_SECOND

    @property
    def merged_grid(self) -> tuple[int, int]:
        """(rows, cols) of video tokens per frame pair."""
        m = self.settings.merge_size
        return self.grid[0] // m, self.grid[1] // m

    @property
    def visual_tokens_per_step(self) -> int:
        rows, cols = self.merged_grid
        return self.pairs_per_step * rows * cols

    @property
    def audio_tokens_per_step(self) -> int:
        return int(STEP_SECONDS * AUDIO_TOKENS_PER_SECOND)

    @property
    def tokens_per_step(self) -> int:
        return self.visual_tokens_per_step + self.audio_tokens_per_step

    def chunk(self, model: StreamingModel, steps: range, first_position: int, origin: int) -> Chunk:
        """The thinker's tokens of ``steps``: per step its two frame pairs' video tokens, then its
        50 audio tokens, at TMRoPE positions measured from ``origin`` (module docstring of
        :mod:`~omnimem_ref.model.qwen_omni.positions`)."""
        n, k = len(steps), self.pairs_per_step
        pairs = range(steps.start * k, steps.stop * k)
        audio_tokens = range(
            steps.start * self.audio_tokens_per_step, steps.stop * self.audio_tokens_per_step
        )
        pixels, mel = self.step_inputs(steps)
        video = model.encode_video(pixels, self.grid)
        audio = model.encode_audio(mel)

        def interleave(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            """Per step: its video tokens, then its audio tokens (last dimension: tokens)."""
            v, a = v.unflatten(-1, (n, -1)), a.unflatten(-1, (n, -1))
            return torch.cat([v, a], dim=-1).flatten(-2)

        embeddings = interleave(video.T, audio.T).T
        rotary = interleave(
            video_positions(origin, pairs, self.merged_grid, self.seconds_per_pair),
            audio_positions(origin, audio_tokens),
        )
        cells = self.merged_grid[0] * self.merged_grid[1]
        pair = torch.arange(pairs.start, pairs.stop).repeat_interleave(cells)
        j = torch.arange(audio_tokens.start, audio_tokens.stop)
        seconds = interleave(
            (pair + 0.5) * self.seconds_per_pair, (j + 0.5) / AUDIO_TOKENS_PER_SECOND
        )
        meta = TokenMeta(
            modality=interleave(torch.full((len(pair),), VISUAL), torch.full((len(j),), AUDIO)),
            seconds=seconds,
            patch=interleave(torch.arange(cells).repeat(len(pairs)), torch.full((len(j),), -1)),
            position=first_position + torch.arange(len(seconds)),
        )
        return Chunk(embeddings, meta, rotary)


@dataclass
class ThinkerStream(ThinkerSteps):
    """A clip prepared for the thinker (the session's :class:`~omnimem_ref.streaming.stream.Stream`),
    every step's inputs in memory: for arrays, tests and the stock thinker's whole-clip inputs.

    ``pixels`` (pairs, patches, patch_dim): every frame pair's packed patches; ``grid`` (rows,
    cols) of patches per frame; ``mel`` (bins, steps · 200).
    """

    pixels: torch.Tensor
    grid: tuple[int, int]
    mel: torch.Tensor
    settings: VisionSettings

    @staticmethod
    def from_arrays(
        frames: np.ndarray, waveform: np.ndarray, settings: VisionSettings, n_mels: int = 128
    ) -> ThinkerStream:
        """uint8 frames at :func:`frame_times` and a mono 16 kHz waveform."""
        n_steps = len(frames) // FRAMES_PER_STEP
        pixels, grid = pack_frames(frames[: n_steps * FRAMES_PER_STEP], settings)
        return ThinkerStream(pixels, grid, log_mel(waveform, n_steps, n_mels), settings)

    @property
    def n_steps(self) -> int:
        return self.mel.shape[1] // MEL_FRAMES_PER_STEP

    def step_inputs(self, steps: range) -> tuple[torch.Tensor, torch.Tensor]:
        k, f = self.pairs_per_step, MEL_FRAMES_PER_STEP
        pixels = self.pixels[steps.start * k : steps.stop * k]
        return pixels, self.mel[:, steps.start * f : steps.stop * f]
