"""The benchmark: every policy at every budget on one folder of clips, tabled like the paper.

Each clip is decoded once (the slow part on a CPU); then ``full`` streams it once with no budget
(the upper bound: it never evicts, so it does not depend on the budget) and every other policy
streams it at every budget. All the clip's questions are asked of each compressed memory.

Per policy and budget the benchmark reports:

- accuracy, overall and per question family, and the number of questions ``n``;
- memory: the peak KV tokens per layer (before compression, so at most ``budget + chunk``), the
  most tokens held after a compression (at most ``budget``), bytes over all layers, and how
  many tokens of each modality were left at the end of the stream (mean over clips);
- cost: the wall time of scoring + selection + eviction as a fraction of the wall time of the
  model's own chunk prefills, amortized over the stream,
  ``Σ_chunks compress_seconds / Σ_chunks prefill_seconds`` (chunks that did not compress count
  in the denominator: that is what a stream pays), and the mean time of one compression.

A budget of tokens larger than a clip's whole stream evicts nothing on that clip; the record
counts those clips (``clips_without_eviction``) and the tables say so.

One idea per module; every name is importable from here:

- :mod:`~omnimem_ref.benchmark.records`: :class:`BenchRecord`, :class:`BenchResult` (to and
  from JSON) and :func:`parse_budgets`;
- :mod:`~omnimem_ref.benchmark.run`: :func:`run_benchmark`, the loop that fills them;
- :mod:`~omnimem_ref.benchmark.tables`: the text tables, and :func:`report` with all of them (the
  module is not called ``report``, so that name stays the function's);
- :mod:`~omnimem_ref.benchmark.files`: JSON and CSV files (:func:`write_json`,
  :func:`write_csv`, :func:`load_result`, :func:`to_rows`).
"""

from __future__ import annotations

from omnimem_ref.benchmark.files import CSV_FIELDS, load_result, to_rows, write_csv, write_json
from omnimem_ref.benchmark.records import FULL, BenchRecord, BenchResult, parse_budgets
from omnimem_ref.benchmark.run import PolicyFactory, run_benchmark
from omnimem_ref.benchmark.tables import (
    ablation_table,
    accuracy_table,
    compression_cost_table,
    difference,
    difference_table,
    family_table,
    notes,
    report,
)

__all__ = [
    "CSV_FIELDS",
    "FULL",
    "BenchRecord",
    "BenchResult",
    "PolicyFactory",
    "ablation_table",
    "accuracy_table",
    "compression_cost_table",
    "difference",
    "difference_table",
    "family_table",
    "load_result",
    "notes",
    "parse_budgets",
    "report",
    "run_benchmark",
    "to_rows",
    "write_csv",
    "write_json",
]
