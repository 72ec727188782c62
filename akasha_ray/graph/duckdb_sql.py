"""SQL of the embedded graph store. Every value travels as a parameter or a registered table.

Tables carry a `key` (the first 64 bits of a hash of the id) instead of a primary key on the
VARCHAR id: an ART index over random strings made a 1M-row load about 5x slower here. Entities and
memory links index the key for point lookups; relationships are never looked up one by one (paths
and neighbourhoods are answered from the in-memory adjacency), so their key only speeds up the
joins that replace rows, and they carry no index to maintain on bulk loads. Matches are on the key
and then on the id itself, so a key collision cannot mix two records up. Uniqueness of ids is kept
by the store (delete, then insert, in one transaction).
"""

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS graph_entities (
        key UBIGINT NOT NULL,
        id VARCHAR NOT NULL,
        type VARCHAR NOT NULL,
        properties VARCHAR NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS graph_entities_key ON graph_entities (key)",
    """
    CREATE TABLE IF NOT EXISTS graph_relationships (
        key UBIGINT NOT NULL,
        id VARCHAR NOT NULL,
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
    CREATE TABLE IF NOT EXISTS graph_entity_memories (
        entity_key UBIGINT NOT NULL,
        entity_id VARCHAR NOT NULL,
        memory_id VARCHAR NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS graph_entity_memories_key ON graph_entity_memories (entity_key)",
)

# `batch` is an Arrow table registered for the statement (columns as in the INSERTs below).
# A batch of relationships the adjacency knows to be new skips the DELETE.
DELETE_ENTITIES_IN_BATCH = (
    "DELETE FROM graph_entities e USING batch b WHERE e.key = b.key AND e.id = b.id"
)
INSERT_ENTITIES = "INSERT INTO graph_entities SELECT key, id, type, properties FROM batch"

DELETE_RELATIONSHIPS_IN_BATCH = (
    "DELETE FROM graph_relationships r USING batch b WHERE r.key = b.key AND r.id = b.id"
)
INSERT_RELATIONSHIPS = """
    INSERT INTO graph_relationships
    SELECT key, id, source, target, type, properties, created_at, valid_from, valid_to FROM batch
"""

SELECT_ENTITY = "SELECT id, type, properties FROM graph_entities WHERE key = $key AND id = $id"
SELECT_ENTITIES_BY_KEYS = """
    SELECT id, type, properties FROM graph_entities
    WHERE key IN (SELECT unnest($keys::UBIGINT[]))
"""
DELETE_ENTITY = "DELETE FROM graph_entities WHERE key = $key AND id = $id"
DELETE_ENTITY_RELATIONSHIPS = "DELETE FROM graph_relationships WHERE source = $id OR target = $id"
DELETE_ENTITY_LINKS = (
    "DELETE FROM graph_entity_memories WHERE entity_key = $key AND entity_id = $id"
)

SELECT_LINKED_ENTITIES = """
    SELECT entity_id FROM graph_entity_memories
    WHERE entity_key IN (SELECT unnest($keys::UBIGINT[])) AND memory_id = $memory_id
"""
INSERT_LINKS = (
    "INSERT INTO graph_entity_memories SELECT entity_key, entity_id, memory_id FROM batch"
)
DELETE_MEMORY_LINKS = "DELETE FROM graph_entity_memories WHERE memory_id = $memory_id"
SELECT_ENTITY_MEMORIES = """
    SELECT memory_id FROM graph_entity_memories
    WHERE entity_key = $key AND entity_id = $id
    ORDER BY memory_id
"""

# Dense numbers for the in-memory adjacency: entities by id order, types by name order. The two
# ORDER BYs below and the CTEs in EDGES_FOR_ADJACENCY number rows the same way.
ENTITY_IDS_IN_ORDER = "SELECT id FROM graph_entities ORDER BY id"
TYPES_IN_ORDER = "SELECT DISTINCT type FROM graph_relationships ORDER BY type"
EDGES_FOR_ADJACENCY = """
    WITH n AS (
        SELECT id, (row_number() OVER (ORDER BY id) - 1)::INTEGER AS idx FROM graph_entities
    ),
    t AS (
        SELECT type, (row_number() OVER (ORDER BY type) - 1)::INTEGER AS code
        FROM (SELECT DISTINCT type FROM graph_relationships)
    )
    SELECT s.idx AS src, d.idx AS dst, t.code AS etype,
           coalesce(epoch_us(r.valid_from), $open_low) AS vf,
           coalesce(epoch_us(r.valid_to), $open_high) AS vt,
           epoch_us(r.created_at) AS created,
           r.properties AS properties
    FROM graph_relationships r
    JOIN n s ON r.source = s.id
    JOIN n d ON r.target = d.id
    JOIN t ON r.type = t.type
"""

COUNTS = """
    SELECT (SELECT count(*) FROM graph_entities),
           (SELECT count(*) FROM graph_relationships),
           (SELECT count(*) FROM graph_entity_memories)
"""
