"""The text tables and the report that ``omnimem bench`` prints, from a finished run.

- :func:`accuracy_table`: policies x budgets, accuracy in %;
- :func:`difference_table` and :func:`ablation_table`: differences from ``omnimem`` in points,
  with 95% paired bootstrap intervals over clips (:mod:`omnimem_ref.stats`);
- :func:`head_wise_table`: each policy chosen per key/value head against the same policy chosen
  per layer, with the same intervals;
- :func:`family_table`: accuracy per question family, and the audio tokens kept;
- :func:`compression_cost_table`: the time of scoring + selection + eviction against the
  model's own prefill, and memory per budget (not to be confused with
  :func:`omnimem_ref.cost.cost_table`, which tables ``omnimem cost``'s sweep of model shapes);
- :func:`notes`: the budgets that held some clip's whole stream (nothing evicted there);
- :func:`report`: all of them, as the command prints them.
"""

from __future__ import annotations

from omnimem_ref.benchmark.records import FULL, BenchResult
from omnimem_ref.budget import budget_label
from omnimem_ref.policies import POLICIES
from omnimem_ref.policies.per_head import SUFFIX
from omnimem_ref.stats import Interval, record_difference


def _percent(value: float | None) -> str:
    return "  –  " if value is None else f"{100 * value:5.1f}"


def accuracy_table(result: BenchResult) -> str:
    """Rows: policies; columns: budgets; cells: accuracy in % (full: the same in every column)."""
    first = 24
    header = f"{'policy':<{first}}" + "".join(f"{budget_label(b):>9}" for b in result.budgets)
    lines = [header, "-" * len(header)]
    full = result.full
    if full is not None:
        cells = "".join(f"{_percent(full.accuracy):>9}" for _ in result.budgets)
        lines.append(f"{'full (upper bound)':<{first}}{cells}")
    for policy in result.policies:
        cells = "".join(f"{_percent(result.record(policy, b).accuracy):>9}" for b in result.budgets)
        lines.append(f"{policy:<{first}}{cells}")
    n = full.n if full is not None else 0
    title = (
        f"Accuracy (%) on {n} questions from {full.clips if full else 0} clips; "
        "budget: KV tokens per layer (tok), or a share of the full stream (%)"
    )
    return "\n".join([title, *lines])


def family_table(result: BenchResult) -> str:
    """Rows: policy x budget; columns: accuracy (%) overall and per question family."""
    families = result.families  # the four classic families, or the six of the hard world
    first = 34
    header = (
        f"{'policy @ budget':<{first}}{'all':>7}"
        + "".join(f"{f:>10}" for f in families)
        + f"{'audio kept':>12}"
    )
    lines = ["Accuracy (%) per question family; audio tokens kept per layer at the end", header]
    lines.append("-" * len(header))
    for r in result.records:
        at = f" @ {budget_label(r.budget)}" if r.budget is not None else " (no budget)"
        label = r.policy + at
        cells = "".join(f"{_percent(r.by_family.get(f)):>10}" for f in families)
        audio = r.kept_tokens.get("audio", 0.0)
        lines.append(f"{label:<{first}}{_percent(r.accuracy):>7}{cells}{audio:>12.1f}")
    return "\n".join(lines)


def compression_cost_table(result: BenchResult) -> str:
    """Rows: policies; per budget: compression time / prefill time (amortized) and ms per
    compression; then memory per budget (peak before and max after compression)."""
    first = 24
    width = 18
    header = f"{'policy':<{first}}" + "".join(f"{budget_label(b):>{width}}" for b in result.budgets)
    lines = [
        "Cost of scoring + selection: Σ compress time / Σ prefill time over every chunk "
        "(ms per compression)",
        header,
        "-" * len(header),
    ]
    for policy in result.policies:
        cells = []
        for b in result.budgets:
            r = result.record(policy, b)
            cells.append(f"{100 * r.cost_ratio:7.1f}% ({r.compress_ms_mean:5.1f})")
        lines.append(f"{policy:<{first}}" + "".join(f"{c:>{width}}" for c in cells))
    full = result.full
    if full is not None:
        lines.append(f"full memory: prefill {full.prefill_ms_mean:.1f} ms per chunk on average")
    lines.append("")
    lines.append("Memory per layer (max over policies and clips)")
    mem_header = (
        f"{'budget':>10}{'budget tok':>12}{'peak tok':>10}{'kept tok':>10}{'peak bytes':>14}"
    )
    lines += [mem_header, "-" * len(mem_header)]
    for b in result.budgets:
        rows = [result.record(p, b) for p in result.policies]
        if not rows:
            continue
        peak = max(rows, key=lambda r: r.peak_kv_tokens)
        kept = max(r.max_kept_tokens for r in rows)
        lines.append(
            f"{budget_label(b):>10}{rows[0].budget_tokens:>12.1f}{peak.peak_kv_tokens:>10}{kept:>10.0f}"
            f"{peak.peak_kv_bytes:>14,}"
        )
    if full is not None:
        lines.append(
            f"{'none':>10}{'':>12}{full.peak_kv_tokens:>10}{full.max_kept_tokens:>10.0f}"
            f"{full.peak_kv_bytes:>14,}"
        )
    return "\n".join(lines)


def difference(result: BenchResult, policy: str, budget: str, base: str) -> Interval | None:
    """``policy`` minus ``base`` at ``budget`` in points, with its 95% paired bootstrap interval
    over clips (:mod:`omnimem_ref.stats`; fixed seed, so the same every time); ``None`` when a
    record lacks its per-question answers (a JSON from before they were kept)."""
    a, b = result.record(base, budget), result.record(policy, budget)
    if any(len(r.predictions) != len(result.questions) for r in (a, b)):
        return None
    return record_difference(a, b, result.questions)


def _difference_cell(result: BenchResult, policy: str, budget: str, base: str) -> str:
    interval = difference(result, policy, budget, base)
    return "–" if interval is None else str(interval)


def difference_table(result: BenchResult, base: str = "omnimem") -> str | None:
    """Every other policy (``full`` first) minus ``base`` at each budget: the difference in
    points and its 95% paired bootstrap interval over clips; ``None`` if the run lacks ``base``."""
    others = [p for p in result.policies if p != base]
    others = ([FULL] if result.full is not None else []) + others
    if base not in result.policies or not others:
        return None
    first, width = 24, 26
    header = f"{'policy':<{first}}" + "".join(f"{budget_label(b):>{width}}" for b in result.budgets)
    title = (
        f"Difference from {base} at the same budget "
        "(points; 95% paired bootstrap interval over clips)"
    )
    lines = [title, header, "-" * len(header)]
    for policy in others:
        cells = [_difference_cell(result, policy, b, base) for b in result.budgets]
        lines.append(f"{policy:<{first}}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


def ablation_table(result: BenchResult, base: str = "omnimem") -> str | None:
    """``base`` and its ablations: accuracy (%) and the change in points, with its 95% paired
    bootstrap interval over clips, from the policy each ablation differs from by exactly one
    change (its ``compared_with``: ``omnimem``, or ``omnimem-tail`` for the attention score,
    which needs queries); ``None`` if the run has ``base`` without any ablation."""
    against = {p: _compared_with(p) for p in result.policies}
    ablations = [p for p, other in against.items() if other is not None and p != base]
    if base not in result.policies or not ablations:
        return None
    first, width = 36, 32  # cells: accuracy, then the change, left-aligned
    budgets = [f"{budget_label(b):>5}" for b in result.budgets]
    header = _left_aligned("policy (compared with)", budgets, first, width)
    title = (
        "Ablations: accuracy (%) and change from the policy each differs from by one change "
        "(points; 95% paired bootstrap interval over clips)"
    )
    lines = [title, header, "-" * (first + width * len(budgets))]
    for policy in [base, *ablations]:
        other = against.get(policy)
        label = policy if other is None or policy == base else f"{policy} ({other})"
        cells = []
        for b in result.budgets:
            change = ""
            if other is not None and policy != base:
                change = _difference_cell(result, policy, b, other) if other in against else "–"
            cells.append(f"{100 * result.record(policy, b).accuracy:5.1f}  {change}")
        lines.append(_left_aligned(label, cells, first, width))
    return "\n".join(lines)


def head_wise_table(result: BenchResult) -> str | None:
    """Each ``<policy>-per-head`` in the run beside ``<policy>`` (per layer): accuracy (%) of both
    and the change from choosing per head, in points with its 95% paired bootstrap interval;
    ``None`` if the run has no such pair."""
    pairs = [
        (p.removesuffix(SUFFIX), p)
        for p in result.policies
        if p.endswith(SUFFIX) and p.removesuffix(SUFFIX) in result.policies
    ]
    if not pairs:
        return None
    first, width = 24, 36
    budgets = [f"{budget_label(b):>5}" for b in result.budgets]
    header = _left_aligned("policy", budgets, first, width)
    title = (
        "Per layer vs per key/value head: accuracy (%) per layer / per head, and the change "
        "from choosing per head (points; 95% paired bootstrap interval over clips)"
    )
    lines = [title, header, "-" * (first + width * len(budgets))]
    for layer_wise, head_wise in pairs:
        cells = []
        for b in result.budgets:
            a, h = result.record(layer_wise, b).accuracy, result.record(head_wise, b).accuracy
            change = _difference_cell(result, head_wise, b, layer_wise)
            cells.append(f"{100 * a:5.1f} / {100 * h:5.1f}  {change}")
        lines.append(_left_aligned(layer_wise, cells, first, width))
    return "\n".join(lines)


def _left_aligned(label: str, cells: list[str], first: int, width: int) -> str:
    """One line of a table whose cells are left-aligned (a number, then its interval)."""
    return (f"{label:<{first}}" + "".join(f"{c:<{width}}" for c in cells)).rstrip()


def _compared_with(policy: str) -> str | None:
    """The registered policy an ablation differs from by one change, if ``policy`` is one."""
    factory = POLICIES.get(policy)
    return getattr(factory, "compared_with", None)


def notes(result: BenchResult) -> list[str]:
    """One line per budget that held the whole stream of some clip (nothing evicted there), and
    one if the model ran with log-length attention."""
    out = []
    if result.log_length_keys is not None:
        out.append(
            f"note: the model ran with log-length attention past {result.log_length_keys} keys."
        )
    for b in result.budgets:
        rows = [result.record(p, b) for p in result.policies]
        if rows and rows[0].clips_without_eviction:
            out.append(
                f"note: budget {b} holds the whole stream on {rows[0].clips_without_eviction} of "
                f"{rows[0].clips} clip(s), so nothing was evicted there."
            )
    return out


def report(result: BenchResult) -> str:
    """Everything the command prints: accuracy, differences from omnimem, ablations and per-head
    pairs (if the run has them), per family, cost, notes."""
    optional = [difference_table(result), ablation_table(result), head_wise_table(result)]
    parts = [accuracy_table(result), *(t for t in optional if t is not None)]
    parts += [family_table(result), compression_cost_table(result)]
    text = "\n\n".join(parts)
    extra = notes(result)
    return text + ("\n\n" + "\n".join(extra) if extra else "")
