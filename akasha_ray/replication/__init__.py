"""Replication to other regions (README, "Regions"): the change log every acknowledged write
goes to, its shipment to other regions' buckets as Delta Lake tables, the witness that fences
promotions, and the one apply path that secondaries, restores and imports share."""
