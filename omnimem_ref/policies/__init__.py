"""Compression policies, one per module, made from a name with :func:`make_policy`."""

from __future__ import annotations

from omnimem_ref.errors import OmniMemError
from omnimem_ref.policies.base import ChunkContext, CompressionPolicy, keep_top
from omnimem_ref.policies.full import FullMemory
from omnimem_ref.policies.recent import RecentWindow

POLICIES: dict[str, type[CompressionPolicy]] = {cls.name: cls for cls in (FullMemory, RecentWindow)}


def make_policy(name: str) -> CompressionPolicy:
    """The policy called ``name``; an unknown name lists the valid ones."""
    if name not in POLICIES:
        raise OmniMemError(f"Unknown policy {name!r}; choose one of: {', '.join(POLICIES)}.")
    return POLICIES[name]()


__all__ = ["POLICIES", "ChunkContext", "CompressionPolicy", "keep_top", "make_policy"]
