"""Qwen2.5-Omni's thinker behind the streaming session (``docs/qwen2_5_omni.md``).

- :mod:`.positions`: TMRoPE, each token's (time, height, width) rotary positions, chunk by chunk;
- :mod:`.inputs`: frames and audio as the thinker reads them, a clip as a stream of 2-s chunks;
- :mod:`.clip_stream`: a clip file streamed to the thinker, decoded a chunk at a time;
- :mod:`.model`: the thinker as a streaming model (the boundary of ``omnimem_ref.core``);
- :mod:`.loading`: a local checkpoint folder and a clip file, with one-sentence errors;
- :mod:`.tiny`: a tiny random thinker and tokenizer built locally (tests, notebook 06; no download);
- :mod:`.shapes`: a thinker of a real 3B/7B shape with random weights, for GPU measurements.
"""

from omnimem_ref.model.qwen_omni.inputs import ThinkerStream, VisionSettings
from omnimem_ref.model.qwen_omni.model import QwenOmniThinker, ThinkerPrompts

__all__ = ["QwenOmniThinker", "ThinkerPrompts", "ThinkerStream", "VisionSettings"]
