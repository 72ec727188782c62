"""In-memory adjacency of the embedded graph: CSR arrays plus an overlay of recent writes.

Nodes are dense ints (the store maps entity ids to them). Every edge has a number: edges 0..E-1
were loaded into the CSR arrays at the last build, edges E.. sit in the overlay, appended by writes
since. Deleting or superseding an edge clears its `alive` bit; once the overlay and the dead edges
outgrow a fraction of the graph (`needs_rebuild`) the store builds a fresh one from its tables. So
small writes cost microseconds here, and a bulk load one rebuild.

Each edge keeps everything a `Relationship` needs (its id is derived from the rest), its owner
included, so a path or a neighbourhood is answered without a database round trip, and crosses
only the owners its filter allows.

Traversals take a cap on the entities they reach (besides the start): once a search has reached
more, it stops before the next level and says so (`PathSearch.truncated`, `Levels.truncated`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike

OPEN_LOW = np.iinfo(np.int64).min  # valid_from absent
OPEN_HIGH = np.iinfo(np.int64).max  # valid_to absent
_REBUILD_FLOOR = 4096
_REBUILD_FRACTION = 32
# A large frontier is expanded in pieces of this many adjacency slots, then twice as many, and so
# on, checking for a meeting after each: any meeting within a level gives a shortest path, so the
# rest of the level is skipped (networkx's pure-Python BFS gets the same effect by returning at the
# first meeting neighbour).
_FIRST_PIECE_SLOTS = 512
_EMPTY = np.empty(0, np.int64)
_LAST_TOKEN = np.iinfo(np.int32).max


class Direction(Enum):
    OUT = "out"  # follow source -> target
    IN = "in"  # follow target -> source
    BOTH = "both"


@dataclass
class EdgeColumns:
    """One row per edge: ends as node numbers, type code, validity and creation in epoch µs,
    owner code."""

    src: np.ndarray  # int32
    dst: np.ndarray  # int32
    etype: np.ndarray  # int32, index into the store's type names
    vf: np.ndarray  # int64, OPEN_LOW when unbounded
    vt: np.ndarray  # int64, OPEN_HIGH when open
    created: np.ndarray  # int64
    owner: np.ndarray  # int32, index into the store's owner names

    @classmethod
    def of(
        cls,
        src: ArrayLike,
        dst: ArrayLike,
        etype: ArrayLike,
        vf: ArrayLike,
        vt: ArrayLike,
        created: ArrayLike,
        owner: ArrayLike | None = None,
    ) -> EdgeColumns:
        src = np.asarray(src, np.int32)
        return cls(
            src=src,
            dst=np.asarray(dst, np.int32),
            etype=np.asarray(etype, np.int32),
            vf=np.asarray(vf, np.int64),
            vt=np.asarray(vt, np.int64),
            created=np.asarray(created, np.int64),
            owner=np.zeros(src.size, np.int32) if owner is None else np.asarray(owner, np.int32),
        )

    @classmethod
    def empty(cls) -> EdgeColumns:
        return cls.of(*([],) * 6)

    def __len__(self) -> int:
        return len(self.src)

    def concat(self, other: EdgeColumns) -> EdgeColumns:
        return EdgeColumns(
            *(np.concatenate([getattr(self, f), getattr(other, f)]) for f in _FIELDS)
        )

    def take(self, rows: np.ndarray) -> EdgeColumns:
        return EdgeColumns(*(getattr(self, f)[rows] for f in _FIELDS))


_FIELDS = tuple(f.name for f in fields(EdgeColumns))


@dataclass(frozen=True)
class EdgeFilter:
    allowed: np.ndarray | None = None  # bool per type code; None: every type
    as_of: int | None = None  # epoch µs; None: ignore validity
    owners: np.ndarray | None = None  # bool per owner code; None: every owner

    def keep(self, cols: EdgeColumns, rows: np.ndarray) -> np.ndarray | None:
        keep = None
        if self.allowed is not None:
            keep = self.allowed[cols.etype[rows]]
        if self.owners is not None:
            mine = self.owners[cols.owner[rows]]
            keep = mine if keep is None else keep & mine
        if self.as_of is not None:
            valid = (cols.vf[rows] <= self.as_of) & (self.as_of < cols.vt[rows])
            keep = valid if keep is None else keep & valid
        return keep


@dataclass
class _Csr:
    """Slots grouped by node: `nbr[ptr[v]:ptr[v+1]]` are v's neighbours via `edge[...]`."""

    ptr: np.ndarray  # int64, n_nodes + 1
    deg: np.ndarray  # int32, n_nodes: ptr's differences, a smaller array to read per search step
    nbr: np.ndarray  # int32
    edge: np.ndarray  # int32

    @classmethod
    def build(cls, ends: np.ndarray, others: np.ndarray, edges: np.ndarray, n: int) -> _Csr:
        order = np.argsort(ends, kind="stable")
        deg = np.bincount(ends, minlength=n)
        ptr = np.zeros(n + 1, np.int64)
        np.cumsum(deg, out=ptr[1:])
        return cls(
            ptr=ptr,
            deg=deg.astype(np.int32),
            nbr=others[order].astype(np.int32),
            edge=edges[order].astype(np.int32),
        )

    def gather(self, front: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour, edge) for every slot of the nodes in `front` (all below n_base)."""
        if front.size == 1:  # a slice: no copy (callers never write into the result)
            node = int(front[0])
            start, stop = int(self.ptr[node]), int(self.ptr[node + 1])
            return self.nbr[start:stop], self.edge[start:stop]
        counts = self.deg[front]
        total = int(counts.sum())
        if not total:
            return _EMPTY, _EMPTY
        shift = self.ptr[front] - (np.cumsum(counts) - counts)
        slots = np.repeat(shift, counts) + np.arange(total)
        return self.nbr[slots], self.edge[slots]

    def degree(self, front: np.ndarray) -> int:
        return int(self.deg[front].sum())

    def pieces(self, front: np.ndarray, slots: int, n_base: int) -> list[np.ndarray]:
        """`front` (holding `slots` slots) cut into runs of growing size."""
        if slots <= _FIRST_PIECE_SLOTS or front.size == 1 or n_base == 0:
            return [front]
        inside = np.minimum(front, n_base - 1)  # only sizes the pieces
        running = np.cumsum(self.deg[inside])
        bounds, size = [], _FIRST_PIECE_SLOTS
        while (bounds[-1] if bounds else 0) + size < running[-1]:
            bounds.append((bounds[-1] if bounds else 0) + size)
            size *= 2
        cuts = np.searchsorted(running, bounds, side="right")
        return [piece for piece in np.split(front, cuts) if piece.size]


class PathSearch(NamedTuple):
    """A shortest path as (nodes, edges), or None; `truncated` when the cap stopped the search."""

    found: tuple[list[int], list[int]] | None
    truncated: bool = False


class Levels(NamedTuple):
    """Nodes reached (in level order), their depths, the edges crossed (an edge may repeat);
    `truncated` when the cap stopped the search before `depth` (the levels reached are whole)."""

    nodes: np.ndarray
    depths: np.ndarray
    edges: np.ndarray
    truncated: bool = False


class _Search:
    """Per-node state of one side of a search, reused across queries: a node is `seen` in the
    current query when its stamp equals the query's, so nothing is cleared between queries."""

    # int32 keeps these arrays half the size, so more of them stays in cache during a search.
    def __init__(self, n: int) -> None:
        self.stamp = np.zeros(n, np.int32)
        self.via = np.full(n, -1, np.int32)  # the edge that reached the node
        self.token = 0
        self.front = np.zeros(n, np.int32)  # stamps of the nodes being expanded now
        self.front_token = 0

    def grow(self, n: int) -> None:
        extra = n - self.stamp.size
        if extra > 0:
            self.stamp = np.concatenate([self.stamp, np.zeros(extra, np.int32)])
            self.via = np.concatenate([self.via, np.full(extra, -1, np.int32)])
            self.front = np.concatenate([self.front, np.zeros(extra, np.int32)])

    def expanding(self, nodes: np.ndarray) -> None:
        if self.front_token == _LAST_TOKEN:
            self.front[:] = 0
            self.front_token = 0
        self.front_token += 1
        self.front[nodes] = self.front_token

    def in_front(self, nodes: np.ndarray) -> np.ndarray:
        return self.front[nodes] == self.front_token

    def start(self, root: int) -> np.ndarray:
        if self.token == _LAST_TOKEN:  # after 2**31 searches: clear, and count again
            self.stamp[:] = 0
            self.token = 0
        self.token += 1
        self.stamp[root] = self.token
        self.via[root] = -1
        return np.array([root], np.int64)

    def seen(self, nodes: np.ndarray) -> np.ndarray:
        return self.stamp[nodes] == self.token


class Adjacency:
    def __init__(self, n_nodes: int, base: EdgeColumns, base_props: pa.Array) -> None:
        if len(base) >= 2**31 - 1:
            raise ValueError("the embedded graph holds fewer than 2**31 relationships; use Neo4j")
        self.n_nodes = n_nodes
        self._n_base = n_nodes
        self._base = base
        self._base_props = _sparse_texts(base_props)
        numbers = np.arange(len(base), dtype=np.int32)
        self._out = _Csr.build(base.src, base.dst, numbers, n_nodes)
        self._in = _Csr.build(base.dst, base.src, numbers, n_nodes)
        self._both = _Csr.build(
            np.concatenate([base.src, base.dst]),
            np.concatenate([base.dst, base.src]),
            np.concatenate([numbers, numbers]),
            n_nodes,
        )
        self._alive = np.ones(len(base), bool)
        self._dead_base = 0
        self._overlay = EdgeColumns.empty()
        self._ov_props: list[str] = []
        self._ov_alive = np.ones(0, bool)
        self._dead_overlay = 0
        self._forward = _Search(n_nodes)
        self._backward = _Search(n_nodes)
        self._by_direction = {Direction.OUT: self._out, Direction.IN: self._in}
        self._by_direction[Direction.BOTH] = self._both

    # -- size and upkeep -----------------------------------------------------------------------

    @property
    def edge_count(self) -> int:
        return len(self._base) + len(self._overlay) - self._dead_base - self._dead_overlay

    @property
    def overlay_size(self) -> int:
        return len(self._overlay)

    @property
    def rebuild_allowance(self) -> int:
        """How many more overlay or dead edges before a rebuild pays off."""
        room = max(_REBUILD_FLOOR, len(self._base) // _REBUILD_FRACTION)
        return room - len(self._overlay) - self._dead_base

    @property
    def needs_rebuild(self) -> bool:
        return self.rebuild_allowance < 0

    def grow(self, n_nodes: int) -> None:
        """New entities got numbers up to n_nodes - 1; they have overlay edges only."""
        if n_nodes > self.n_nodes:
            self.n_nodes = n_nodes
            self._forward.grow(n_nodes)
            self._backward.grow(n_nodes)

    def add_edges(self, cols: EdgeColumns, props: list[str]) -> None:
        self._overlay = self._overlay.concat(cols)
        self._ov_props.extend(props)
        self._ov_alive = np.concatenate([self._ov_alive, np.ones(len(cols), bool)])

    def find_edge(
        self, src: int, dst: int, etype: int, vf: int, owner: int | None = None
    ) -> int | None:
        """The live edge with this identity (the relationship id derives from it), if any;
        `owner` None matches any owner."""
        if src < self._n_base:
            _, rows = self._out.gather(np.array([src]))
            cols = self._base
            match = (
                (cols.dst[rows] == dst)
                & (cols.etype[rows] == etype)
                & (cols.vf[rows] == vf)
                & self._alive[rows]
            )
            if owner is not None:
                match &= cols.owner[rows] == owner
            hit = rows[match]
            if hit.size:
                return int(hit[0])
        ov = self._overlay
        match = (ov.src == src) & (ov.dst == dst) & (ov.etype == etype) & (ov.vf == vf)
        match &= self._ov_alive
        if owner is not None:
            match &= ov.owner == owner
        hit = np.nonzero(match)[0]
        return int(hit[0]) + len(self._base) if hit.size else None

    def kill_edge(self, edge: int) -> None:
        n_base = len(self._base)
        if edge < n_base:
            self._alive[edge] = False
            self._dead_base += 1
        else:
            self._ov_alive[edge - n_base] = False
            self._dead_overlay += 1

    def remove_node_edges(self, node: int) -> None:
        if node < self._n_base:
            _, rows = self._both.gather(np.array([node]))
            rows = np.unique(rows[self._alive[rows]])
            self._alive[rows] = False
            self._dead_base += rows.size
        ov = self._overlay
        hit = ((ov.src == node) | (ov.dst == node)) & self._ov_alive
        self._ov_alive[hit] = False
        self._dead_overlay += int(hit.sum())

    def columns(self, edges: np.ndarray) -> EdgeColumns:
        """The rows of the given edge numbers, base and overlay alike, in that order."""
        n_base = len(self._base)
        in_base = edges < n_base
        if in_base.all():
            return self._base.take(edges)
        merged = self._base.take(edges[in_base]).concat(
            self._overlay.take(edges[~in_base] - n_base)
        )
        order = np.argsort(np.concatenate([np.nonzero(in_base)[0], np.nonzero(~in_base)[0]]))
        return merged.take(order)

    def properties(self, edges: np.ndarray) -> list[str]:
        n_base = len(self._base)
        return [
            (self._base_props[e] or "{}") if e < n_base else self._ov_props[e - n_base]
            for e in edges.tolist()
        ]

    # -- traversal -----------------------------------------------------------------------------

    def _expand(
        self,
        front: np.ndarray,
        direction: Direction,
        csr: _Csr,
        flt: EdgeFilter,
        side: _Search,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(node, edge) for every live edge from `front` that passes `flt`."""
        # Entities created since the build have numbers past the CSR arrays: overlay edges only.
        inside = front if self.n_nodes == self._n_base else front[front < self._n_base]
        to, edges = csr.gather(inside)
        if to.size:
            keep = self._alive[edges] if self._dead_base else None
            extra = flt.keep(self._base, edges)
            if extra is not None:
                keep = extra if keep is None else keep & extra
            if keep is not None:
                to, edges = to[keep], edges[keep]
        if not len(self._overlay):
            return to, edges
        ov = self._overlay
        side.expanding(front)
        parts_to, parts_rows = [to], [edges]
        if direction is not Direction.IN:
            rows = np.nonzero(side.in_front(ov.src) & self._ov_alive)[0]
            parts_to.append(ov.dst[rows])
            parts_rows.append(rows)
        if direction is not Direction.OUT:
            rows = np.nonzero(side.in_front(ov.dst) & self._ov_alive)[0]
            parts_to.append(ov.src[rows])
            parts_rows.append(rows)
        for i in range(1, len(parts_rows)):
            rows = parts_rows[i]
            keep = flt.keep(ov, rows)
            if keep is not None:
                rows, parts_to[i] = rows[keep], parts_to[i][keep]
            parts_rows[i] = rows + len(self._base)
        return np.concatenate(parts_to), np.concatenate(parts_rows)

    def _step(
        self,
        front: np.ndarray,
        direction: Direction,
        csr: _Csr,
        flt: EdgeFilter,
        side: _Search,
        other: _Search,
        slots: int,
    ) -> tuple[np.ndarray, int | None]:
        """Grow `side` by one level: (nodes reached first now, a node `other` has seen or None).

        Stops at the first edge that reaches the other side. No node is seen by both sides
        unnoticed (whichever side reaches it second stops there), so that node is new to `side`.
        """
        reached = []
        for piece in csr.pieces(front, slots, self._n_base):
            to, edges = self._expand(piece, direction, csr, flt, side)
            hits = np.flatnonzero(other.stamp[to] == other.token)
            if hits.size:
                meet = int(to[hits[0]])
                side.via[meet] = edges[hits[0]]
                side.stamp[meet] = side.token
                return _EMPTY, meet
            reached.append(_claim(to, edges, side))
        return (reached[0] if len(reached) == 1 else np.concatenate(reached)), None

    def _cost(self, front: np.ndarray, csr: _Csr) -> int:
        inside = front if self.n_nodes == self._n_base else front[front < self._n_base]
        return csr.degree(inside) + front.size - inside.size

    def shortest_path(
        self,
        source: int,
        target: int,
        max_hops: int,
        flt: EdgeFilter,
        directed: bool,
        cap: int | None = None,
    ) -> PathSearch:
        """Bidirectional BFS, a level at a time, always growing the cheaper side.

        The first level at which the two searches touch gives a shortest path: before it, no
        path of length <= (forward depth + backward depth) existed. Once both sides together
        have reached more than `cap` nodes with levels still to go, it gives up: truncated.
        """
        if source == target:
            return PathSearch(([source], []))
        fwd_dir = Direction.OUT if directed else Direction.BOTH
        bwd_dir = Direction.IN if directed else Direction.BOTH
        csr_f, csr_b = self._by_direction[fwd_dir], self._by_direction[bwd_dir]
        fwd, bwd = self._forward, self._backward
        front_f, front_b = fwd.start(source), bwd.start(target)
        cost_f, cost_b = self._cost(front_f, csr_f), self._cost(front_b, csr_b)
        reached = 0
        for hop in range(max_hops):
            if cost_f <= cost_b:
                front_f, meet = self._step(front_f, fwd_dir, csr_f, flt, fwd, bwd, cost_f)
                if meet is None:
                    cost_f = self._cost(front_f, csr_f)
                    reached += front_f.size
            else:
                front_b, meet = self._step(front_b, bwd_dir, csr_b, flt, bwd, fwd, cost_b)
                if meet is None:
                    cost_b = self._cost(front_b, csr_b)
                    reached += front_b.size
            if meet is not None:
                return PathSearch(self._join(meet, directed))
            if not front_f.size or not front_b.size:
                break
            if cap is not None and reached > cap and hop < max_hops - 1:
                return PathSearch(None, truncated=True)
        return PathSearch(None)

    def _other_end(self, edge: int, node: int) -> int:
        cols, row = (
            (self._base, edge)
            if edge < len(self._base)
            else (self._overlay, edge - len(self._base))
        )
        src, dst = int(cols.src[row]), int(cols.dst[row])
        return src if dst == node else dst

    def _join(self, meet: int, directed: bool) -> tuple[list[int], list[int]]:
        nodes, edges = [meet], []
        for side in (self._forward, self._backward):
            node, half_nodes, half_edges = meet, [], []
            while (edge := int(side.via[node])) != -1:
                node = self._other_end(edge, node)
                half_nodes.append(node)
                half_edges.append(edge)
            if side is self._forward:
                nodes = [*reversed(half_nodes), *nodes]
                edges = [*reversed(half_edges), *edges]
            else:
                nodes += half_nodes
                edges += half_edges
        return nodes, edges

    def levels(self, start: int, depth: int, flt: EdgeFilter, cap: int | None = None) -> Levels:
        """Undirected BFS to `depth`; stops after a level once more than `cap` nodes are reached
        (truncated when levels were left)."""
        side = self._forward
        front = side.start(start)
        reached_nodes, reached_depths, crossed = [], [], []
        reached, truncated = 0, False
        for level in range(1, depth + 1):
            to, edges = self._expand(front, Direction.BOTH, self._both, flt, side)
            crossed.append(edges)
            front = _claim(to, edges, side)
            reached_nodes.append(front)
            reached_depths.append(np.full(front.size, level, np.int64))
            reached += front.size
            if not front.size:
                break
            if cap is not None and reached > cap and level < depth:
                truncated = True
                break
        return Levels(
            np.concatenate(reached_nodes),
            np.concatenate(reached_depths),
            np.concatenate(crossed),
            truncated,
        )


def _sparse_texts(texts: pa.Array) -> np.ndarray:
    """Property texts as Python strings where there are any; None (shared) for the empty "{}"."""
    out = np.full(len(texts), None, object)
    filled = pc.not_equal(texts, "{}")
    out[np.flatnonzero(filled.to_numpy(zero_copy_only=False))] = texts.filter(filled).to_pylist()
    return out


def _claim(to: np.ndarray, edges: np.ndarray, side: _Search) -> np.ndarray:
    """Mark the unseen nodes among `to` as seen, each via one of the edges that reached it."""
    fresh = side.stamp[to] != side.token
    to, edges = to[fresh], edges[fresh]
    # Several edges may reach one node: whichever write wins, only its entry is kept.
    side.via[to] = edges
    reached = to[side.via[to] == edges]
    side.stamp[reached] = side.token
    return reached
