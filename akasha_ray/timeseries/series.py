"""The DuckDB store's catalog of series: (system_id, metric_name) -> a small integer id.

Ids are assigned once and never change, so the in-memory copy can be read without a lock.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SEPARATOR = "\x1f"  # cannot occur in a validated system_id or metric_name


class SeriesCatalog:
    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._by_metric: dict[str, list[int]] = {}

    def add(self, rows: Iterable[tuple[int, str, str]]) -> None:
        for series_id, system_id, metric_name in rows:
            self._ids[(system_id, metric_name)] = series_id
            self._by_metric.setdefault(metric_name, []).append(series_id)

    def get(self, system_id: str, metric_name: str) -> int | None:
        return self._ids.get((system_id, metric_name))

    def of_metric(self, metric_name: str) -> list[int]:
        return list(self._by_metric.get(metric_name, ()))

    def ids_of(self, table: pa.Table, pending: Iterable[tuple[int, str, str]] = ()) -> np.ndarray:
        """The series id of every row of a batch, whose series are known or `pending`."""
        ids = self._ids
        pending = list(pending)
        if pending:
            ids = {**ids, **{(s, m): i for i, s, m in pending}}
        keys = pc.binary_join_element_wise(
            table.column("system_id"), table.column("metric_name"), _SEPARATOR
        )
        encoded = pc.dictionary_encode(keys).combine_chunks()
        lookup = np.array(
            [ids[tuple(k.split(_SEPARATOR))] for k in encoded.dictionary.to_pylist()],
            dtype=np.int32,
        )
        return lookup[encoded.indices.to_numpy()]

    def __len__(self) -> int:
        return len(self._ids)
