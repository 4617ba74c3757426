"""TMRoPE: where Qwen2.5-Omni's thinker places each token, chunk by chunk.

Every token gets three rotary positions, (time, height, width); the decoder's rotary embedding
rotates each frequency section of a query or key by one of them (``mrope_section`` says how many
frequencies each row owns). With the audio track interleaved into the video
(``use_audio_in_video``), transformers' ``get_rope_index`` lays a clip out as

    text … <|vision_bos|> <|audio_bos|>  [2-s chunk: video tokens, then audio tokens] …  <|audio_eos|> <|vision_eos|> text …

and numbers it, with ``o`` the position right after the two opening markers (they share one):

- video token of frame pair ``g``, merged grid cell ``(r, c)``: ``(o + ⌊25 · g · s⌋, o + r, o + c)``
  (``s`` = seconds per frame pair; time advances 25 per second, the height and width rows do not
  carry the time offset);
- audio token ``j`` (25 per second): ``o + j`` on all three rows;
- text: one position per token on all three rows, continuing after the largest position so far;
  the two closing markers share one position, as the two opening ones do.

Everything here is a function of a token's time and grid cell and of ``o``, so each chunk is
placed on its own, with absolute time offsets, and no position is ever renumbered after an
eviction. ``tests/test_qwen_omni.py`` checks these against ``get_rope_index`` for a whole clip.
"""

from __future__ import annotations

import torch

POSITIONS_PER_SECOND = 25  # the thinker config's position_id_per_seconds


def text_positions(ids: torch.Tensor, start: int, shared: tuple[int, ...]) -> torch.Tensor:
    """(3, n) positions of text token ids from ``start``; a token in ``shared`` (``<|audio_bos|>``
    after ``<|vision_bos|>``, ``<|vision_eos|>`` after ``<|audio_eos|>``) takes the position of
    the token before it."""
    steps = torch.ones(len(ids), dtype=torch.long, device=ids.device)
    if len(ids) > 1:
        steps[1:] = (~torch.isin(ids[1:], torch.tensor(shared, device=ids.device))).long()
    return (start + steps.cumsum(0) - 1).unsqueeze(0).expand(3, -1)


def video_positions(
    origin: int, pairs: range, grid: tuple[int, int], seconds_per_pair: float
) -> torch.Tensor:
    """(3, len(pairs) · rows · cols) positions of the merged video tokens of frame pairs
    ``pairs``, pair by pair, each pair's cells row by row (the vision encoder's output order)."""
    rows, cols = grid
    g = torch.arange(pairs.start, pairs.stop)
    time = (g * seconds_per_pair * POSITIONS_PER_SECOND).long()  # ⌊25 · g · s⌋, as get_rope_index
    t = time.view(-1, 1, 1).expand(-1, rows, cols)
    h = torch.arange(rows).view(1, -1, 1).expand(len(g), -1, cols)
    w = torch.arange(cols).view(1, 1, -1).expand(len(g), rows, -1)
    return origin + torch.stack([t, h, w]).flatten(1)


def audio_positions(origin: int, tokens: range) -> torch.Tensor:
    """(3, len(tokens)) positions of audio tokens ``tokens`` (25 per second): ``o + j``."""
    return origin + torch.arange(tokens.start, tokens.stop).unsqueeze(0).expand(3, -1)
