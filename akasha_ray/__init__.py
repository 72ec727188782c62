"""Akasha: a memory service for fleets of AI systems, built on Ray."""

__version__ = "0.1.0"
