"""``streammem``: attention from generic chat-template queries, compressing after every clip.

Yang et al., "StreamMem: Query-Agnostic KV Cache Memory for Streaming Video Understanding" (2025).
The question is unknown while the video streams, so the chat-template tokens that would follow any
question (in an instruction-tuned MLLM they prompt a description of the video) serve as proxy
queries: run after memory without being stored, their attention to each cached token, averaged
over the proxy tokens and heads, is its saliency, ``s_i = mean_{q in template, h} a_{q,i}^h``; the
top tokens are kept after each incoming clip, which is when this session compresses.

Here the chat template is TinyOmni's question template with no question in it,
``"question : answer :"`` (:data:`~omnimem_ref.policies.queries.TEMPLATE_ONLY`); the proxy's own
tokens take part in the softmax like a real prompt's would. Per layer (heads averaged).

Not reproduced: StreamMem's input-frame filtering (dropping near-duplicate frames before
encoding) and its frame-wise prototype merging (one averaged key/value per frame added to memory):
both change what enters memory, which this session's policies do not control; they only choose
what to evict. This makes ``streammem`` here its attention-based pruning alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimem_ref.core import KVMemory
from omnimem_ref.policies.attention import mean_attention
from omnimem_ref.policies.base import ChunkContext
from omnimem_ref.policies.composed import ComposedPolicy
from omnimem_ref.policies.queries import TEMPLATE_ONLY, generic_prompt


@dataclass
class PromptAttentionScorer:
    """``s_i = mean_{q, h} a_{q,i}^h``: attention of a generic prompt (run after memory, then
    forgotten) to each cached row, averaged over the prompt's tokens and heads."""

    question: str = TEMPLATE_ONLY

    def __call__(self, memory: KVMemory, context: ChunkContext) -> torch.Tensor:
        return mean_attention(memory, generic_prompt(memory, context, self.question))


class StreamMem(ComposedPolicy):
    """Keeps the tokens a generic chat-template prompt attends to most."""

    name = "streammem"

    def __init__(self, question: str = TEMPLATE_ONLY) -> None:
        super().__init__(PromptAttentionScorer(question))
