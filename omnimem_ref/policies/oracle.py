"""Brute-force oracles, for teaching and for judging the estimators on the tiny model.

- :func:`layer_output_change`: evict one token from one layer's attention (every head at once),
  recompute the attention from scratch and apply ``o_proj``: how far the layer's output moved. The
  perturbation score of :mod:`~omnimem_ref.policies.perturbation` must agree.
- :func:`unit_output_change`: evict one row from one key/value head only (head-wise memory):
  how far the layer's output moves when the heads of that head's query group lose the row.
- :func:`head_output_change`: the same, head by head (``||W_O^h (o^{h,-i} − o^h)||``), for the
  ``heads="mean"`` variant.
(:func:`omnimem_ref.streaming.oracle.answer_kl_oracle` is the end-to-end oracle: the change of
the answer distribution when a token is evicted from every layer.)
"""

from __future__ import annotations

import torch

from omnimem_ref.policies.attention import attend


def _outputs_without_each_token(
    queries: torch.Tensor,
    query_positions: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    key_positions: torch.Tensor,
    n: int,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Head outputs (heads, q, d) with every key, and with each of the first ``n`` keys removed."""
    _, full = attend(queries, query_positions, keys, values, key_positions, torch.float64)
    without = []
    for i in range(n):
        rest = torch.arange(keys.shape[1], device=keys.device) != i
        _, out = attend(
            queries,
            query_positions,
            keys[:, rest],
            values[:, rest],
            key_positions[..., rest],
            torch.float64,
        )
        without.append(torch.nan_to_num(out))  # a query that saw only token i now sees nothing
    return full, without


def layer_output_change(
    queries: torch.Tensor,
    query_positions: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    key_positions: torch.Tensor,
    w_o: torch.Tensor,
    n: int | None = None,
) -> torch.Tensor:
    """(q, n): ``||o_proj(concat_h o_q^{h,-i}) − o_proj(concat_h o_q^h)||`` with each of the first
    ``n`` keys (default: all) removed from every head in turn, in float64.

    ``w_o`` (hidden, heads * d) is ``o_proj``'s weight; everything else as in
    :func:`~omnimem_ref.policies.attention.attend`.
    """
    # Every head loses the row: one unit holding all of them.
    return unit_output_change(
        queries, query_positions, keys, values, key_positions, w_o, units=1, n=n
    )[0]


def unit_output_change(
    queries: torch.Tensor,
    query_positions: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    key_positions: torch.Tensor,
    w_o: torch.Tensor,
    units: int,
    n: int | None = None,
) -> torch.Tensor:
    """(units, q, n): the layer's output change when row ``i`` leaves unit ``u`` alone, for each
    of the first ``n`` rows, in float64. A unit is a group of ``heads / units`` consecutive query
    heads (a key/value head and its group): only their outputs lose the row.
    """
    n = keys.shape[1] if n is None else n
    full, without = _outputs_without_each_token(
        queries, query_positions, keys, values, key_positions, n
    )
    w_o = w_o.double()
    group = torch.arange(len(full), device=full.device) // (len(full) // units)  # unit of each head

    def layer_output(heads: torch.Tensor) -> torch.Tensor:  # (heads, q, d) -> (q, hidden)
        return heads.transpose(0, 1).flatten(1) @ w_o.T

    reference = layer_output(full)
    changes = []
    for unit in range(units):
        in_unit = (group == unit).view(-1, 1, 1)
        changes.append(
            torch.stack(
                [
                    (layer_output(torch.where(in_unit, o, full)) - reference).norm(dim=-1)
                    for o in without
                ],
                -1,
            )
        )
    return torch.stack(changes)


def head_output_change(
    queries: torch.Tensor,
    query_positions: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    key_positions: torch.Tensor,
    w_o: torch.Tensor,
) -> torch.Tensor:
    """(heads, q, tokens): ``||W_O^h (o_q^{-i} - o_q)||`` with each token ``i`` removed in turn.

    ``w_o`` (heads, hidden, d) are the per-head slices of ``o_proj``; everything else as in
    :func:`~omnimem_ref.policies.attention.attend`.
    """
    full, without = _outputs_without_each_token(
        queries, query_positions, keys, values, key_positions, keys.shape[1]
    )
    w_o = w_o.double()
    changes = [torch.einsum("hkd,hqd->hqk", w_o, o - full).norm(dim=-1) for o in without]
    return torch.stack(changes, dim=-1)
