"""Published long-video benchmarks (Video-MME, LVBench, LVOmniBench) through the streaming session.

``omnimem_ref.benchmark`` is the synthetic benchmark: clips this package generated, questions in
its own vocabulary, answered by TinyOmni. This package is the other kind: questions and videos
as the benchmarks publish them, answered by a real model (Qwen2.5-Omni's thinker) by the letter
of an option. One idea per module:

- :mod:`.multiple_choice`: :class:`MultipleChoice`, the one record every format becomes, and the
  checks that refuse a bad record in one sentence;
- :mod:`.videomme`, :mod:`.lvbench`, :mod:`.lvomnibench`: one published format each (a reader,
  and a writer for generated clips);
- :mod:`.formats`: the formats by name (:func:`read_benchmark`, :func:`write_annotations`);
- :mod:`.answers`: the answer log, one durable JSON line per answer, resumable;
- :mod:`.run`: the loop (each video streamed once per policy and budget);
- :mod:`.summary`: accuracy per policy, budget and task type, from the log.
"""

from __future__ import annotations

from omnimem_ref.real_benchmarks.formats import FORMATS, read_benchmark, write_annotations
from omnimem_ref.real_benchmarks.multiple_choice import MultipleChoice, check_videos

__all__ = ["FORMATS", "MultipleChoice", "check_videos", "read_benchmark", "write_annotations"]
