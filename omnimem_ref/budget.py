"""Memory budgets: a number of KV tokens per layer, or a fraction of the full stream.

``--budget 500`` keeps at most 500 tokens per layer; ``--budget 0.1`` keeps 10% of the tokens the
full stream (prompt included) would have. A fraction is resolved per clip, since clips differ in
length.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnimem_ref.errors import OmniMemError

_HOW = "give tokens (a whole number >= 1) or a fraction of the stream in (0, 1], e.g. 0.1"


@dataclass(frozen=True)
class Budget:
    """Exactly one of ``tokens`` and ``fraction`` is set."""

    tokens: int | None = None
    fraction: float | None = None

    def resolve(self, full_stream_tokens: int) -> int:
        """The budget in tokens for a stream that would hold ``full_stream_tokens`` tokens."""
        if self.tokens is not None:
            return self.tokens
        assert self.fraction is not None
        return max(1, round(self.fraction * full_stream_tokens))

    def __str__(self) -> str:
        return str(self.tokens) if self.tokens is not None else f"{self.fraction:g}"

    def label(self) -> str:
        """How a table heads this budget: ``"5%"`` for a fraction, ``"500 tok"`` for tokens."""
        if self.tokens is not None:
            return f"{self.tokens} tok"
        assert self.fraction is not None
        return f"{100 * self.fraction:g}%"


def budget_label(text: str) -> str:
    """``"0.05"`` -> ``"5%"``, ``"500"`` -> ``"500 tok"``: a budget as a table heads it."""
    return parse_budget(text).label()


def parse_budget(text: str | float | int) -> Budget:
    """``"500"`` -> 500 tokens; ``"0.1"`` -> 10% of the stream; anything else is refused."""
    raw = str(text).strip()
    try:
        if raw.lstrip("+-").isdigit():
            tokens = int(raw)
            if tokens >= 1:
                return Budget(tokens=tokens)
        else:
            fraction = float(raw)
            if 0 < fraction <= 1:
                return Budget(fraction=fraction)
    except ValueError:
        pass
    raise OmniMemError(f"Budget {raw!r} is not valid; {_HOW}.")
