"""The vector width every store is built for (all-MiniLM-L6-v2)."""

DIM = 384
