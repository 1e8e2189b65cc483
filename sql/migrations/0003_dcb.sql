-- fstore 0003: dynamic consistency boundaries (DCB).
--
-- A decision may depend on events of several streams. It reads the events it
-- depends on with a query (query_events) and appends only if none of them
-- changed since (append_events_if): no event matching the query may have an
-- offset above the position its read returned.
--
-- A query is JSON: {"items": [item, ...]}, items OR-ed. An item is
-- {"types"?: [event, ...], "matches"?: [{...}, ...]}: the event's type is one
-- of types (when given) and its data contains every match (JSON containment,
-- data @> match, when given). {} matches every event.
--
-- SQLSTATEs raised here:
--   FS009 condition failed: an event matching the condition's query has an
--         offset above the condition's position
--   FS010 invalid query: the query is not of the shape above
--
-- Why a condition is race-free under READ COMMITTED (docs/dcb.md has more):
--   1. Conditional appends serialise with each other on advisory locks. Each
--      takes, in ascending key order, an exclusive lock for every key of its
--      query and a shared lock for every key of the events it appends; any
--      event that matches an item holds at least one of that item's keys
--      (fstore_event_keys, fstore_query_keys). Too many keys, or an item that
--      matches everything, take one global key exclusively instead.
--   2. Their offsets are allocated after the locks: of two conflicting
--      conditional appends, the one that waited has the higher offsets, and
--      its check sees the other's events.
--   3. An unconditional append takes no key locks. A conditional append waits,
--      after inserting, for every unconditional writer that may hold an offset
--      below its own (the read horizon's locks tell which), then checks the
--      events below its own. An unconditional event is thus either seen by
--      the check or placed after the conditional append's events in the log,
--      where the condition is not about it.

-- Queries by type, and containment on data, use indexes. The GIN index keeps
-- its fast-update pending list (appends stay cheap) but bounds it to 64 kB,
-- the least allowed: every query reads the whole list, for every match. At
-- the default 4 MB a query for 10 events read 263 buffers instead of 36; at
-- 512 kB each match read 65 (docs/benchmarks.md has the plan).
-- Building them blocks appends (about 15 s for 2 million events, measured);
-- on a large store, build them first with CREATE INDEX CONCURRENTLY and these
-- exact definitions (docs/operating.md), and the migration keeps them.
CREATE INDEX IF NOT EXISTS events_event_idx ON events (event, "offset");
CREATE INDEX IF NOT EXISTS events_data_idx ON events USING gin (data jsonb_path_ops) WITH (gin_pending_list_limit = 64);

-- The write-horizon lock of a conditional append goes to a key space of its
-- own (the two-int4 form of advisory locks, same 64-bit key), so conditional
-- appends do not wait for each other in step 3; readers honour both spaces.
CREATE OR REPLACE FUNCTION fstore_lock_write_horizon() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    k BIGINT := -(COALESCE(pg_sequence_last_value('events_offset_seq'), 0) + 1);
BEGIN
    IF current_setting('fstore.conditional', true) = 'on' THEN
        PERFORM pg_advisory_xact_lock_shared((k >> 32)::INT, ((k << 32) >> 32)::INT);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(k);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION fstore_read_horizon() RETURNS BIGINT
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    v BIGINT;
    k BIGINT;
BEGIN
    v := COALESCE(pg_sequence_last_value('events_offset_seq'), 0) + 1;
    SELECT -max((l.classid::BIGINT << 32) | l.objid::BIGINT)
    INTO k
    FROM pg_locks l
    WHERE l.locktype = 'advisory'
      AND l.objsubid IN (1, 2)
      AND l.classid::BIGINT >= 2147483648 -- negative keys only
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
    RETURN LEAST(v, COALESCE(k, v));
END;
$$;

-- The boolean SQL expression (over the alias e) of a query, validated; raises
-- FS010 for a malformed query. Values are quoted literals, so the planner sees
-- them and can use events_event_idx and events_data_idx.
CREATE FUNCTION fstore_query_sql(v_query JSONB) RETURNS TEXT
    LANGUAGE plpgsql
    IMMUTABLE AS
$$
DECLARE
    item  JSONB;
    m     JSONB;
    conds TEXT[];
    ors   TEXT[] := '{}';
    i     INT    := 0;
BEGIN
    IF jsonb_typeof(v_query) IS DISTINCT FROM 'object' OR jsonb_typeof(v_query -> 'items') IS DISTINCT FROM 'array'
        OR jsonb_array_length(v_query -> 'items') = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'FS010', MESSAGE = 'query must be {"items": [...]} with at least one item';
    END IF;
    FOR item IN SELECT value FROM jsonb_array_elements(v_query -> 'items')
        LOOP
            conds := '{}';
            IF jsonb_typeof(item) IS DISTINCT FROM 'object' OR (item - 'types' - 'matches') <> '{}' THEN
                RAISE EXCEPTION USING ERRCODE = 'FS010',
                    MESSAGE = format('query item %s must be an object with only "types" and "matches"', i);
            END IF;
            IF item ? 'types' THEN
                IF jsonb_typeof(item -> 'types') IS DISTINCT FROM 'array' OR jsonb_array_length(item -> 'types') = 0
                    OR EXISTS(SELECT 1 FROM jsonb_array_elements(item -> 'types') t WHERE jsonb_typeof(t) <> 'string') THEN
                    RAISE EXCEPTION USING ERRCODE = 'FS010',
                        MESSAGE = format('query item %s: types must be a non-empty array of event types', i);
                END IF;
                -- With matches, "IS TRUE" keeps the type test out of the
                -- index scans: the planner would otherwise AND a bitmap of
                -- every event of those types (tens of thousands of rows) with
                -- the few the GIN index finds.
                conds := conds || format(CASE WHEN item ? 'matches' THEN '(e.event = ANY (%L::text[])) IS TRUE'
                                              ELSE 'e.event = ANY (%L::text[])' END,
                                         (SELECT array_agg(t) FROM jsonb_array_elements_text(item -> 'types') t));
            END IF;
            IF item ? 'matches' THEN
                IF jsonb_typeof(item -> 'matches') IS DISTINCT FROM 'array' OR jsonb_array_length(item -> 'matches') = 0 THEN
                    RAISE EXCEPTION USING ERRCODE = 'FS010',
                        MESSAGE = format('query item %s: matches must be a non-empty array of objects', i);
                END IF;
                FOR m IN SELECT value FROM jsonb_array_elements(item -> 'matches')
                    LOOP
                        IF jsonb_typeof(m) IS DISTINCT FROM 'object' OR m = '{}' THEN
                            RAISE EXCEPTION USING ERRCODE = 'FS010',
                                MESSAGE = format('query item %s: every match must be an object with at least one field', i);
                        END IF;
                        conds := conds || format('e.data @> %L::jsonb', m);
                    END LOOP;
            END IF;
            IF cardinality(conds) = 0 THEN
                ors := ors || 'TRUE'::TEXT;
            ELSE
                ors := ors || ('(' || array_to_string(conds, ' AND ') || ')');
            END IF;
            i := i + 1;
        END LOOP;
    RETURN '(' || array_to_string(ors, ' OR ') || ')';
END;
$$;

-- Lock keys live in the two-int4 advisory key space under class 1718843255;
-- key 0 is the global key. The key functions are single expressions, so
-- PostgreSQL inlines them.

-- One lock key, never 0 (the global key).
CREATE FUNCTION fstore_dcb_key(v_key TEXT) RETURNS INT
    LANGUAGE sql
    IMMUTABLE AS
$$
SELECT COALESCE(NULLIF(hashtext(v_key), 0), 1)
$$;

-- The key of a top-level field: its name and, for a scalar, its value
-- (jsonb_hash agrees with jsonb equality: 1.0 and 1 share a key). Containers
-- are keyed by name only, since containment is not equality for them.
CREATE FUNCTION fstore_field_key(v_name TEXT, v_value JSONB) RETURNS INT
    LANGUAGE sql
    IMMUTABLE AS
$$
SELECT CASE
           WHEN jsonb_typeof(v_value) IN ('object', 'array') THEN fstore_dcb_key('field:' || v_name)
           ELSE fstore_dcb_key('value:' || v_name || ':' || jsonb_hash(v_value)::TEXT)
           END
$$;

-- The keys appended events hold: each one's type, and each of its top-level
-- fields.
CREATE FUNCTION fstore_event_keys(v_events TEXT[], v_data JSONB[]) RETURNS INT[]
    LANGUAGE plpgsql
    IMMUTABLE AS
$$
BEGIN
    -- plpgsql, not sql: its plan is cached per session, where a sql
    -- function's would be made again on every call (measured: 4× slower).
    RETURN ARRAY(SELECT fstore_dcb_key('type:' || e)
                 FROM unnest(v_events) e
                 UNION
                 SELECT fstore_field_key(f.key, f.value)
                 FROM unnest(v_data) d,
                      jsonb_each(CASE WHEN jsonb_typeof(d) = 'object' THEN d END) f);
END;
$$;

-- The keys a query locks: per item, the key of one field of its matches (a
-- scalar one when there is one), else the keys of its types. An event
-- matching the item holds that key. NULL when an item matches every event.
CREATE FUNCTION fstore_query_keys(v_query JSONB) RETURNS INT[]
    LANGUAGE plpgsql
    IMMUTABLE AS
$$
BEGIN
    RETURN (SELECT CASE WHEN bool_and(k.keys IS NOT NULL) THEN array_agg(DISTINCT u) END
            FROM jsonb_array_elements(v_query -> 'items') item,
                 LATERAL (SELECT COALESCE(
                                         (SELECT ARRAY [fstore_field_key(f.key, f.value)]
                                          FROM jsonb_array_elements(item -> 'matches') m,
                                               jsonb_each(m) f
                                          ORDER BY jsonb_typeof(f.value) IN ('object', 'array'), f.key
                                          LIMIT 1),
                                         (SELECT array_agg(fstore_dcb_key('type:' || t))
                                          FROM jsonb_array_elements_text(item -> 'types') t)) AS keys) k
                     LEFT JOIN LATERAL unnest(k.keys) u ON TRUE);
END;
$$;

-- Step 1 of a conditional append, before its INSERT, in its transaction: the
-- locks, and the mark that puts the INSERT's horizon lock in the conditional
-- key space. v_events and v_data are the types and data of the events to
-- append.
CREATE FUNCTION fstore_condition_lock(v_query JSONB, v_events TEXT[], v_data JSONB[]) RETURNS VOID
    LANGUAGE plpgsql AS
$$
DECLARE
    qkeys INT[];
    ekeys INT[];
    keys  INT[];
    k     INT;
BEGIN
    PERFORM fstore_query_sql(v_query); -- validates
    qkeys := fstore_query_keys(v_query);
    ekeys := fstore_event_keys(v_events, v_data);
    IF qkeys IS NULL OR cardinality(qkeys) + cardinality(ekeys) > 64 THEN
        PERFORM pg_advisory_xact_lock(1718843255, 0);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(1718843255, 0);
        SELECT array_agg(DISTINCT x ORDER BY x) INTO keys FROM unnest(qkeys || ekeys) x;
        FOREACH k IN ARRAY keys
            LOOP
                IF k = ANY (qkeys) THEN
                    PERFORM pg_advisory_xact_lock(1718843255, k);
                ELSE
                    PERFORM pg_advisory_xact_lock_shared(1718843255, k);
                END IF;
            END LOOP;
    END IF;
    PERFORM set_config('fstore.conditional', 'on', true);
END;
$$;

-- Step 3, after the INSERT: wait for the unconditional writers that may hold
-- an offset below the appended events' (v_own: their event_ids), then return
-- the lowest offset above v_after and below theirs of an event matching
-- v_query, other than them; NULL when the condition holds. Each wait takes the writer's horizon
-- key exclusively inside a subtransaction that is then rolled back, which
-- releases it at once.
CREATE FUNCTION fstore_condition_check(v_query JSONB, v_after BIGINT, v_own UUID[]) RETURNS BIGINT
    LANGUAGE plpgsql AS
$$
DECLARE
    v_max   BIGINT;
    writers BIGINT[];
    k       BIGINT;
    v_found BIGINT;
BEGIN
    PERFORM set_config('fstore.conditional', 'off', true);
    SELECT max(e."offset") INTO v_max FROM events e WHERE e.event_id = ANY (v_own);
    v_max := COALESCE(v_max, pg_sequence_last_value('events_offset_seq') + 1, 1);
    SELECT array_agg(DISTINCT (l.classid::BIGINT << 32) | l.objid::BIGINT)
    INTO writers
    FROM pg_locks l
    WHERE l.locktype = 'advisory'
      AND l.objsubid = 1
      AND l.classid::BIGINT >= 2147483648
      AND l.granted
      AND l.pid <> pg_backend_pid()
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND -((l.classid::BIGINT << 32) | l.objid::BIGINT) <= v_max;
    IF writers IS NOT NULL THEN
        BEGIN
            FOREACH k IN ARRAY writers
                LOOP
                    PERFORM pg_advisory_xact_lock(k);
                END LOOP;
            RAISE EXCEPTION USING ERRCODE = 'FSW00';
        EXCEPTION
            WHEN SQLSTATE 'FSW00' THEN NULL;
        END;
    END IF;
    -- Events above v_max come after these in the log: the condition is not
    -- about them. (A conflicting conditional append cannot be among them and
    -- committed already: it waits for this one's locks before it allocates.)
    -- The bounds stay out of index scans but for a real lower bound (see
    -- query_events). min("offset" + 0), not ORDER BY "offset" LIMIT 1: the
    -- planner would walk the primary key hoping for an early match, through
    -- the whole log when there is none, the usual answer (measured: 33
    -- conditional appends/s instead of 1,000+).
    EXECUTE format('SELECT min(e."offset" + 0) FROM events e WHERE %s (e."offset" < $2) IS TRUE
                    AND NOT (e.event_id = ANY ($3)) AND %s',
                   CASE WHEN v_after > 0 THEN 'e."offset" > $1 AND' ELSE '' END, fstore_query_sql(v_query))
        INTO v_found USING v_after, v_max, COALESCE(v_own, '{}');
    RETURN v_found;
END;
$$;

-- fstore_condition_check, raising FS009 when the condition fails; its
-- DETAIL is the offending offset alone, for programs to read.
CREATE FUNCTION fstore_condition_assert(v_query JSONB, v_after BIGINT, v_own UUID[]) RETURNS VOID
    LANGUAGE plpgsql AS
$$
DECLARE
    v_found BIGINT := fstore_condition_check(v_query, v_after, v_own);
BEGIN
    IF v_found IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FS009', DETAIL = v_found::TEXT,
            MESSAGE = format('condition failed: the event at offset %s matches the query and is above position %s',
                             v_found, v_after);
    END IF;
END;
$$;

-- API: the highest offset below which every event that will ever commit has
-- committed: the position to read a query up to, and to use as a condition.
-- Example: SELECT query_position();
CREATE FUNCTION query_position() RETURNS BIGINT
    LANGUAGE sql
    VOLATILE AS
$$
SELECT fstore_read_horizon() - 1
$$;

-- API: the events matching v_query with v_after < offset <= v_position, in
-- offset order, at most v_limit. v_position defaults to query_position(). To
-- use a read as a condition, take the position first, in its own statement,
-- and read up to it:
--   SELECT query_position();                                  -- say 1041
--   SELECT * FROM query_events('{"items":[{"matches":[{"book_id":"b-1"}]}]}', 0, 1000, 1041);
-- When fewer than v_limit events come back, 1041 is the condition's position.
CREATE FUNCTION query_events(v_query JSONB, v_after BIGINT DEFAULT 0, v_limit INT DEFAULT 1000,
                             v_position BIGINT DEFAULT NULL)
    RETURNS SETOF events
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    p     BIGINT := COALESCE(v_position, query_position());
    cond  TEXT   := fstore_query_sql(v_query); -- validates
    sort  TEXT   := 'e."offset"';
BEGIN
    -- When every item has matches, the GIN index finds the few events
    -- fastest, then they are sorted: "+ 0" keeps the planner from walking
    -- the primary key in order instead, hoping for early matches (through the
    -- whole log when there are few). Queries with a type-only or match-all
    -- item read in offset order through (event, offset) or the primary key.
    IF NOT EXISTS(SELECT 1 FROM jsonb_array_elements(v_query -> 'items') i WHERE NOT i ? 'matches') THEN
        sort := 'e."offset" + 0';
    END IF;
    -- The upper bound is a filter ("IS TRUE" keeps it out of index scans): it
    -- is near the end of the log, selects nothing, and on a table without
    -- fresh statistics the planner took it for selective and ANDed a bitmap
    -- of the whole primary key with the GIN index's few rows (11 ms, not 0.3).
    -- Likewise "offset > 0" is left out: it selects everything.
    RETURN QUERY EXECUTE format('SELECT * FROM events e WHERE %s (e."offset" <= $2) IS TRUE AND %s
                                 ORDER BY %s LIMIT $3',
                                CASE WHEN v_after > 0 THEN 'e."offset" > $1 AND' ELSE '' END, cond, sort)
        USING v_after, p, v_limit;
END;
$$;

-- API: append events atomically, all or nothing, only if no event matching
-- v_query has an offset above v_after; otherwise raise FS009 naming the
-- offending offset. v_events is a JSON array of events as append_event takes
-- them: {"event", "event_id", "event_version"?, "decider", "decider_id",
-- "data", "command_id", "previous_id", "final"?}. Per-stream previous_id checks
-- apply as for every append.
-- Example: SELECT * FROM append_events_if('[{"event": "book_lent", ...}]',
--                                         '{"items":[{"matches":[{"book_id":"b-1"}]}]}', 1041);
CREATE FUNCTION append_events_if(v_events JSONB, v_query JSONB, v_after BIGINT)
    RETURNS SETOF events
    LANGUAGE plpgsql AS
$$
DECLARE
    ids UUID[];
BEGIN
    IF jsonb_typeof(v_events) IS DISTINCT FROM 'array' OR jsonb_array_length(v_events) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'FS010', MESSAGE = 'events must be a non-empty JSON array';
    END IF;
    PERFORM fstore_condition_lock(v_query,
                                  ARRAY(SELECT e ->> 'event' FROM jsonb_array_elements(v_events) e),
                                  ARRAY(SELECT e -> 'data' FROM jsonb_array_elements(v_events) e));
    WITH inserted AS (
        INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id, previous_id,
                            final)
            SELECT e ->> 'event', (e ->> 'event_id')::UUID, COALESCE((e ->> 'event_version')::BIGINT, 1),
                   e ->> 'decider', e ->> 'decider_id', e -> 'data', (e ->> 'command_id')::UUID,
                   (e ->> 'previous_id')::UUID, COALESCE((e ->> 'final')::BOOLEAN, FALSE)
            FROM jsonb_array_elements(v_events) WITH ORDINALITY AS x(e, ord)
            ORDER BY x.ord
            RETURNING event_id)
    SELECT array_agg(event_id)
    INTO ids
    FROM inserted;
    PERFORM fstore_condition_assert(v_query, v_after, ids);
    RETURN QUERY SELECT * FROM events e WHERE e.event_id = ANY (ids) ORDER BY e."offset";
END;
$$;
