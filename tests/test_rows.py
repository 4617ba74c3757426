"""Row moves and the in-place per-token stores (omnimem_ref/rows.py)."""

from __future__ import annotations

import torch

from omnimem_ref.rows import RowBuffer, take_rows, take_rows_per_head, unit_batches


def test_take_rows_equals_gather():
    x = torch.randn(3, 10, 5)
    index = torch.randint(0, 10, (3, 4))
    expected = x.gather(1, index.unsqueeze(-1).expand(-1, -1, 5))
    assert torch.equal(take_rows(x, index), expected)


def test_unit_batches_cover_every_unit_once_and_respect_the_size():
    batches = unit_batches(7, per_unit=100, max_size=250)
    assert [(b.start, b.stop) for b in batches] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert unit_batches(3, per_unit=10**9, max_size=10) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert unit_batches(4, per_unit=1, max_size=100) == [slice(0, 100)]


def test_a_row_buffer_owns_its_rows():
    source = torch.arange(12.0).view(1, 1, 12, 1)
    store = RowBuffer(source.expand(2, 3, -1, -1))  # an expanded view cannot be written into
    store.keep(torch.tensor([[[0, 5]], [[1, 2]]]))
    assert torch.equal(source.flatten(), torch.arange(12.0))  # the source is untouched
    assert store.rows[:, 0, :, 0].tolist() == [[0.0, 5.0], [1.0, 2.0]]


def test_appends_grow_in_place_and_keep_equals_taking_the_rows():
    """A stream of appends and evictions gives the rows a plain concatenate-and-gather would,
    and once the buffer is large enough no append or eviction replaces it."""
    g = torch.Generator().manual_seed(0)
    layers, heads, units, dim = 3, 4, 2, 5
    expected = torch.randn(layers, heads, 6, dim, generator=g)
    store = RowBuffer(expected)
    buffers = set()
    for step in range(12):
        new = torch.randn(layers, heads, 3, dim, generator=g)
        store.append(new)
        expected = torch.cat([expected, new], dim=2)
        assert torch.equal(store.rows, expected)
        n = expected.shape[2]
        kept = torch.rand(layers, units, n, generator=g).argsort(dim=-1)[..., :6].sort().values
        store.keep(kept)
        expected = take_rows_per_head(expected, kept)
        assert torch.equal(store.rows, expected)
        if step >= 1:
            buffers.add(store.buffer.data_ptr())
    assert len(buffers) == 1  # steady state: one buffer, written in place


def test_truncate_forgets_the_last_rows():
    store = RowBuffer(torch.arange(8.0).view(1, 1, 8))
    store.truncate(5)
    assert store.rows.flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    store.append(torch.tensor([[[9.0]]]))
    assert store.rows.flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 9.0]
