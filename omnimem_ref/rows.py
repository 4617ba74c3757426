"""Moving rows of per-token tensors: choosing them, and keeping them in buffers that grow in place.

Every per-token tensor of the memory (the cache's keys and values, and what policies derive from
them once per token) is laid out ``(..., tokens, dim)``, and a compression keeps some rows of it.
Two facts about a CPU shape this module:

- **Move whole rows.** ``index_select`` copies each chosen row as one block; ``gather``, which
  reads an index per number, was about three times slower for the same rows.
- **Do not ask the operating system for memory every step.** A float32 tensor larger than 32 MiB
  is mapped afresh on every allocation by glibc's malloc, and the kernel hands it over one zeroed
  page at a time: writing a fresh (8, 8192, 128) tensor cost 16 ms where writing the same numbers
  into an existing one cost 3.5 ms (2-core CPU, one thread). So the per-token stores live in
  :class:`RowBuffer`, which appends into spare capacity and evicts in place, a few units at a time
  (:func:`unit_batches`), and never allocates a store-sized temporary.
"""

from __future__ import annotations

import math

import torch

# Work on at most this many numbers at once (8 MiB of float32), so temporaries are reused heap
# memory rather than freshly mapped pages (module docstring).
MAX_FLOATS = 2**21


def unit_batches(n_units: int, per_unit: int, max_size: int = MAX_FLOATS) -> list[slice]:
    """Consecutive units holding at most ``max_size`` numbers together (``per_unit`` each): every
    unit at once on a small model (where the cost of a step is the number of tensor operations),
    a few at a time at real memory sizes (where it is memory traffic)."""
    per_batch = max(1, max_size // max(1, per_unit))
    return [slice(i, i + per_batch) for i in range(0, n_units, per_batch)]


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(units, k, dim): ``x[u, index[u, j]]`` for (units, n, dim) ``x`` and (units, k) ``index``.

    The same as ``x.gather(1, index[..., None].expand(-1, -1, dim))``, as one ``index_select`` of
    whole rows of the flattened tensor.
    """
    units, n, dim = x.shape
    flat = (index + n * torch.arange(units, device=index.device).unsqueeze(1)).flatten()
    return x.reshape(units * n, dim).index_select(0, flat).view(units, -1, dim)


def take_rows_per_head(rows: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Each head's rows, chosen by its unit's indices.

    ``rows`` (*lead, heads, n, *trail); ``kept`` (*lead, units, k) -> (*lead, heads, k, *trail).
    Layer-wise (one unit) every head takes the same rows; head-wise, ``heads`` is a multiple of the
    units (key/value heads, or the query heads of their groups) and each takes its unit's rows.
    """
    lead = kept.dim() - 2
    heads, units, n = rows.shape[lead], kept.shape[-2], rows.shape[lead + 1]
    if units == 1:
        index = kept.expand(*kept.shape[:-2], heads, -1)
    elif heads % units == 0:
        index = kept.repeat_interleave(heads // units, dim=lead)
    else:
        raise ValueError(f"{heads} heads cannot follow {units} token sets per layer")
    trail = rows.shape[lead + 2 :]
    flat = rows.reshape(-1, n, math.prod(trail))  # (lead x heads, n, numbers per row)
    picked = take_rows(flat, index.reshape(-1, index.shape[-1]))
    return picked.view(*rows.shape[: lead + 1], -1, *trail)


class RowBuffer:
    """A (layers, heads, tokens, ...) per-token tensor that grows and shrinks in place.

    ``rows`` is a view of the first ``length`` rows of a larger ``buffer``. Appending writes into
    the spare rows (growing the buffer by a quarter more than needed when it is full, so a stream
    that fills memory chunk by chunk copies its store a bounded number of times); keeping rows
    moves them to the front of the same buffer, a few layers at a time. Nothing store-sized is
    allocated once the buffer has reached the memory's size plus a chunk.
    """

    def __init__(self, rows: torch.Tensor) -> None:
        self.buffer = rows.clone(memory_format=torch.contiguous_format)  # its own, to write into
        self.length = rows.shape[2]

    @property
    def rows(self) -> torch.Tensor:
        return self.buffer[:, :, : self.length]

    def append(self, new: torch.Tensor) -> None:
        """Add ``new`` (layers, heads, n, ...) after the current rows."""
        end = self.length + new.shape[2]
        if end > self.buffer.shape[2]:
            grown = self.buffer.new_empty(*self.buffer.shape[:2], end + end // 4, *new.shape[3:])
            grown[:, :, : self.length] = self.rows
            self.buffer = grown
        self.buffer[:, :, self.length : end] = new
        self.length = end

    def keep(self, kept: torch.Tensor) -> None:
        """Keep rows ``kept[layer, unit]`` (ascending) of each layer's units, in this order, at
        the front of the buffer. (layers, units per layer, k) ``kept``."""
        k = kept.shape[-1]
        per_layer = self.buffer.shape[1] * math.prod(self.buffer.shape[3:])  # numbers per row
        for layers in unit_batches(len(kept), per_layer * self.length):
            picked = take_rows_per_head(self.rows[layers], kept[layers])  # a small temporary
            self.buffer[layers, :, :k] = picked
        self.length = k

    def truncate(self, length: int) -> None:
        """Forget every row from ``length`` on."""
        self.length = min(self.length, length)
