"""Who appears, and how often: identities (an object's colour and shape, a tone's pitch) and
their repeat counts, in the general world.

Counts are spread over as many different values as fit (1, 2, 3, 1, 2, ...), rather than drawn
independently, so that every count from one to ``--object-repeats`` / ``--tone-repeats`` is present
in a clip. A counting question picks its answer value first and then an identity with that count,
so its answers are balanced over the numbers, not piled on the most common count.
"""

from __future__ import annotations

import numpy as np

from omnimem_ref.world.vocabulary import COLOURS, SHAPES


def spread_counts(total: int, most: int, slots: int) -> list[int]:
    """Counts in ``1..most`` summing to ``total``, on at most ``slots`` identities, with as many
    distinct values as fit (``spread_counts(8, 3, 12) == [1, 2, 3, 1, 1]``).

    The caller checks ``total <= most * slots``.
    """
    counts: list[int] = []
    value = 1
    while sum(counts) < total:
        counts.append(min(value, total - sum(counts)))
        value = value % most + 1
    while len(counts) > slots:  # too many identities: fold the smallest into the others
        spare = counts.pop(counts.index(min(counts)))
        for _ in range(spare):
            room = [i for i, c in enumerate(counts) if c < most]
            counts[min(room, key=lambda i: (counts.count(counts[i]) == 1, counts[i]))] += 1
    return counts


def object_identities(
    rng: np.random.Generator, n: int, shapes_per_colour: int
) -> list[tuple[str, str]]:
    """``n`` distinct (colour, shape) pairs, with up to ``shapes_per_colour`` shapes per colour.

    The first colour always gets a single shape when it can, so a "what shape was the red object"
    question has an object to ask about even when colours are shared.
    """
    groups = _colour_groups(rng, n, shapes_per_colour)
    colours = rng.permutation(list(COLOURS))[: len(groups)]
    pairs = []
    for colour, group in zip(colours, groups, strict=True):
        for shape in rng.choice(SHAPES, size=group, replace=False):
            pairs.append((str(colour), str(shape)))
    return pairs


def _colour_groups(rng: np.random.Generator, n: int, most: int) -> list[int]:
    """How many shapes each colour takes: sizes in ``1..most`` summing to ``n``, one per colour,
    the first colour a single shape."""
    groups = [1] if n > 0 else []
    while sum(groups) < n:
        groups.append(int(rng.integers(1, min(most, n - sum(groups)) + 1)))
    return groups if len(groups) <= len(COLOURS) else _even_groups(n, most)


def _even_groups(n: int, most: int) -> list[int]:
    """``n`` identities over the colours as evenly as fits, keeping one single-shape colour when
    the other colours can hold the rest."""
    others = len(COLOURS) - 1
    if n - 1 <= others * most:
        return [1, *_even(n - 1, others)]
    return _even(n, len(COLOURS))


def _even(n: int, k: int) -> list[int]:
    return [n // k + (i < n % k) for i in range(k)]
