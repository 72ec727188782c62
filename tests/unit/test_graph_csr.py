"""The CSR adjacency alone against networkx: large frontiers (expanded in pieces), the overlay,
dead edges, direction, type and time filters."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pyarrow as pa
import pytest

from akasha_ray.graph.csr import OPEN_HIGH, OPEN_LOW, Adjacency, EdgeColumns, EdgeFilter


def _edges(rng: np.random.Generator, n: int, m: int, first_node: int = 0) -> EdgeColumns:
    start = rng.integers(0, 100, m)
    windowed = rng.random(m) < 0.3
    return EdgeColumns.of(
        src=rng.integers(first_node, n, m),
        dst=rng.integers(0, n, m),
        etype=rng.integers(0, 3, m),
        vf=np.where(windowed, start, OPEN_LOW),
        vt=np.where(windowed, start + rng.integers(1, 50, m), OPEN_HIGH),
        created=np.zeros(m),
    )


def _peer(cols: EdgeColumns, alive: np.ndarray, n: int, flt: EdgeFilter, directed: bool):
    graph = nx.DiGraph() if directed else nx.Graph()
    graph.add_nodes_from(range(n))
    keep = alive.copy()
    if flt.allowed is not None:
        keep &= flt.allowed[cols.etype]
    if flt.as_of is not None:
        keep &= (cols.vf <= flt.as_of) & (flt.as_of < cols.vt)
    graph.add_edges_from(zip(cols.src[keep].tolist(), cols.dst[keep].tolist(), strict=True))
    return graph


# A few filter combinations, so that each phase builds only a few peer graphs.
_MASKS = (None, np.array([True, False, True]), np.array([False, True, False]))
_MOMENTS = (None, 40, 90)


def _check(adjacency, cols, alive, n, rng, queries):
    peers = {}
    found = 0
    for _ in range(queries):
        source, target = (int(x) for x in rng.integers(0, n, 2))
        mask, moment = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        directed = bool(rng.random() < 0.3)
        flt = EdgeFilter(allowed=_MASKS[mask], as_of=_MOMENTS[moment])
        key = (mask, moment, directed)
        if key not in peers:
            peers[key] = _peer(cols, alive, n, flt, directed)
        hops = int(rng.integers(1, 7))
        try:
            length = nx.shortest_path_length(peers[key], source, target)
        except nx.NetworkXNoPath:
            length = None
        expected = length if length is not None and length <= hops else None
        result = adjacency.shortest_path(source, target, hops, flt, directed)
        assert not result.truncated  # no cap given
        if expected is None:
            assert result.found is None
            continue
        found += 1
        nodes, edges = result.found
        assert len(nodes) - 1 == expected == len(edges)
        assert nodes[0] == source and nodes[-1] == target
        for i, edge in enumerate(edges):
            assert alive[edge]
            pair = (int(cols.src[edge]), int(cols.dst[edge]))
            assert pair == (nodes[i], nodes[i + 1]) or (
                not directed and pair == (nodes[i + 1], nodes[i])
            )
    return found


@pytest.mark.parametrize("seed", [1, 2])
def test_paths_match_networkx_through_overlay_and_deaths(seed):
    rng = np.random.default_rng(seed)
    n = 2000  # degree ~20: frontiers of thousands of slots, expanded in pieces
    base = _edges(rng, n, 20_000)
    adjacency = Adjacency(n, base, pa.array(["{}"] * len(base)))
    alive = np.ones(len(base), bool)
    assert _check(adjacency, base, alive, n, rng, 150) > 50

    # New nodes (numbers beyond the base) with overlay edges, and more edges among old nodes.
    adjacency.grow(n + 50)
    extra = _edges(rng, n + 50, 600)
    adjacency.add_edges(extra, ["{}"] * len(extra))
    cols, n = base.concat(extra), n + 50
    alive = np.concatenate([alive, np.ones(len(extra), bool)])
    assert _check(adjacency, cols, alive, n, rng, 150) > 50

    for node in rng.integers(0, n, 40).tolist():
        adjacency.remove_node_edges(node)
        alive &= (cols.src != node) & (cols.dst != node)
    for edge in rng.choice(np.nonzero(alive)[0], 300, replace=False).tolist():
        adjacency.kill_edge(edge)
        alive[edge] = False
    assert adjacency.edge_count == int(alive.sum())
    assert _check(adjacency, cols, alive, n, rng, 150) > 50


def test_find_edge_sees_base_and_overlay():
    base = EdgeColumns.of([0, 0], [1, 1], [0, 1], [OPEN_LOW, 5], [OPEN_HIGH, 9], [0, 0])
    adjacency = Adjacency(3, base, pa.array(["{}", "{}"]))
    assert adjacency.find_edge(0, 1, 1, 5) == 1
    assert adjacency.find_edge(0, 1, 1, OPEN_LOW) is None
    adjacency.add_edges(EdgeColumns.of([2], [0], [0], [OPEN_LOW], [OPEN_HIGH], [0]), ['{"a":1}'])
    assert adjacency.find_edge(2, 0, 0, OPEN_LOW) == 2
    assert adjacency.properties(np.array([2, 0])) == ['{"a":1}', "{}"]
    adjacency.kill_edge(1)
    assert adjacency.find_edge(0, 1, 1, 5) is None


def test_levels_match_networkx():
    rng = np.random.default_rng(3)
    n = 500
    cols = _edges(rng, n, 1500)
    adjacency = Adjacency(n, cols, pa.array(["{}"] * len(cols)))
    graph = _peer(cols, np.ones(len(cols), bool), n, EdgeFilter(), False)
    for start in range(0, n, 25):
        nodes, depths, crossed, truncated = adjacency.levels(start, 3, EdgeFilter())
        assert not truncated
        dist = nx.single_source_shortest_path_length(graph, start, cutoff=3)
        assert dict(zip(nodes.tolist(), depths.tolist(), strict=True)) == {
            k: v for k, v in dist.items() if k != start
        }
        ends = [(int(cols.src[e]), int(cols.dst[e])) for e in crossed]
        assert all(min(dist[a], dist[b]) < 3 for a, b in ends)
