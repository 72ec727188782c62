"""SQL of the embedded graph store. Every value travels as a parameter or a registered table.

Tables carry a `key` (the first 64 bits of a hash) instead of a primary key on a VARCHAR: an ART
index over random strings made a 1M-row load about 5x slower here. Entities are keyed by their node
key (`<owner>/<id>`, see `models.node_key`), memory links by the entity id and by the memory key,
each with an index for point lookups; relationships are never looked up one by one (paths and
neighbourhoods are answered from the in-memory adjacency), so their key only speeds up the joins
that replace rows, and they carry no index to maintain on bulk loads. Matches are on the key and
then on the string itself, so a key collision cannot mix two records up. Uniqueness is kept by the
store (delete, then insert, in one transaction).

The tables of the graph before ownership (`graph_entities`, `graph_relationships`,
`graph_entity_memories`) are read once by `EmbeddedGraph` and moved into these (see `LEGACY_*`).
"""

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS graph_nodes (
        key UBIGINT NOT NULL,
        node VARCHAR NOT NULL,
        system_id VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        type VARCHAR NOT NULL,
        properties VARCHAR NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS graph_nodes_key ON graph_nodes (key)",
    """
    CREATE TABLE IF NOT EXISTS graph_edges (
        key UBIGINT NOT NULL,
        id VARCHAR NOT NULL,
        system_id VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        type VARCHAR NOT NULL,
        properties VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        valid_from TIMESTAMPTZ,
        valid_to TIMESTAMPTZ
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS graph_links (
        entity_key UBIGINT NOT NULL,
        entity_id VARCHAR NOT NULL,
        system_id VARCHAR NOT NULL,
        memory_hash UBIGINT NOT NULL,
        memory_key VARCHAR NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS graph_links_entity ON graph_links (entity_key)",
    "CREATE INDEX IF NOT EXISTS graph_links_memory ON graph_links (memory_hash)",
)

# `batch` is an Arrow table registered for the statement (columns as in the INSERTs below).
# A batch of relationships the adjacency knows to be new skips the DELETE.
DELETE_ENTITIES_IN_BATCH = (
    "DELETE FROM graph_nodes e USING batch b WHERE e.key = b.key AND e.node = b.node"
)
INSERT_ENTITIES = (
    "INSERT INTO graph_nodes SELECT key, node, system_id, id, type, properties FROM batch"
)

DELETE_RELATIONSHIPS_IN_BATCH = (
    "DELETE FROM graph_edges r USING batch b WHERE r.key = b.key AND r.id = b.id"
)
INSERT_RELATIONSHIPS = """
    INSERT INTO graph_edges
    SELECT key, id, system_id, source, target, type, properties, created_at, valid_from, valid_to
    FROM batch
"""

SELECT_ENTITIES_BY_KEYS = """
    SELECT node, system_id, id, type, properties FROM graph_nodes
    WHERE key IN (SELECT unnest($keys::UBIGINT[]))
"""
DELETE_ENTITY = "DELETE FROM graph_nodes WHERE key = $key AND node = $node"
DELETE_ENTITY_RELATIONSHIPS = "DELETE FROM graph_edges WHERE source = $node OR target = $node"
# A system's entity: that system's links to the id. A shared one: the links of every system that
# has no entity of its own under that id (theirs meant the shared one).
DELETE_SYSTEM_ENTITY_LINKS = """
    DELETE FROM graph_links
    WHERE entity_key = $key AND entity_id = $id AND system_id = $system_id
"""
DELETE_SHARED_ENTITY_LINKS = """
    DELETE FROM graph_links
    WHERE entity_key = $key AND entity_id = $id
      AND system_id NOT IN (SELECT system_id FROM graph_nodes WHERE id = $id)
"""

SELECT_LINKS_OF_MEMORIES = """
    SELECT memory_key, entity_id FROM graph_links
    WHERE memory_hash IN (SELECT unnest($hashes::UBIGINT[]))
"""
INSERT_LINKS = """
    INSERT INTO graph_links
    SELECT entity_key, entity_id, system_id, memory_hash, memory_key FROM batch
"""
DELETE_MEMORY_LINKS = """
    DELETE FROM graph_links WHERE memory_hash = $hash AND memory_key = $memory_key
"""
# One page more than asked, so the store knows whether there is a next page.
SELECT_ENTITY_MEMORIES = """
    SELECT memory_key FROM graph_links
    WHERE entity_key = $key AND entity_id = $id
      AND ($systems::VARCHAR[] IS NULL OR list_contains($systems::VARCHAR[], system_id))
      AND ($after::VARCHAR IS NULL OR memory_key > $after::VARCHAR)
    ORDER BY memory_key
    LIMIT $limit
"""

# Dense numbers for the in-memory adjacency: entities by node order, types and owners by name
# order. The ORDER BYs below and the CTEs in EDGES_FOR_ADJACENCY number rows the same way.
ENTITY_NODES_IN_ORDER = "SELECT node FROM graph_nodes ORDER BY node"
TYPES_IN_ORDER = "SELECT DISTINCT type FROM graph_edges ORDER BY type"
OWNERS_IN_ORDER = "SELECT DISTINCT system_id FROM graph_edges ORDER BY system_id"
EDGES_FOR_ADJACENCY = """
    WITH n AS (
        SELECT node, (row_number() OVER (ORDER BY node) - 1)::INTEGER AS idx FROM graph_nodes
    ),
    t AS (
        SELECT type, (row_number() OVER (ORDER BY type) - 1)::INTEGER AS code
        FROM (SELECT DISTINCT type FROM graph_edges)
    ),
    o AS (
        SELECT system_id, (row_number() OVER (ORDER BY system_id) - 1)::INTEGER AS code
        FROM (SELECT DISTINCT system_id FROM graph_edges)
    )
    SELECT s.idx AS src, d.idx AS dst, t.code AS etype,
           coalesce(epoch_us(r.valid_from), $open_low) AS vf,
           coalesce(epoch_us(r.valid_to), $open_high) AS vt,
           epoch_us(r.created_at) AS created,
           o.code AS owner,
           r.properties AS properties
    FROM graph_edges r
    JOIN n s ON r.source = s.node
    JOIN n d ON r.target = d.node
    JOIN t ON r.type = t.type
    JOIN o ON r.system_id = o.system_id
"""

COUNTS = """
    SELECT (SELECT count(*) FROM graph_nodes),
           (SELECT count(*) FROM graph_edges),
           (SELECT count(*) FROM graph_links)
"""

# -- the graph before ownership: everything in it becomes shared -----------------------------------

LEGACY_TABLES = """
    SELECT table_name FROM information_schema.tables
    WHERE table_name IN ('graph_entities', 'graph_relationships', 'graph_entity_memories')
"""
LEGACY_ENTITIES = "SELECT id, type, properties FROM graph_entities"
# Shared relationships keep their ids: `relationship_id` derives a shared one as before.
LEGACY_RELATIONSHIPS = """
    INSERT INTO graph_edges
    SELECT key, id, $shared, $shared || '/' || source, $shared || '/' || target, type,
           properties, created_at, valid_from, valid_to
    FROM graph_relationships
"""
LEGACY_LINK_COUNT = "SELECT count(*) FROM graph_entity_memories"
LEGACY_DROP = (
    "DROP TABLE IF EXISTS graph_entity_memories",
    "DROP TABLE IF EXISTS graph_relationships",
    "DROP TABLE IF EXISTS graph_entities",
)
