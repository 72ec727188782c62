"""The memory service: one write path (and read path) for memories, whoever calls it."""

from akasha_ray.memories.service import Found, Ingested, MemoryService, call

__all__ = ["Found", "Ingested", "MemoryService", "call"]
