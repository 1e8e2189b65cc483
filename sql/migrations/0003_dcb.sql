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
--      below its own (the read horizon's locks tell which), then checks. An
--      unconditional event is thus either seen by the check or placed after
--      the conditional append's events in the log.

-- Queries by type, and containment on data, use indexes.
CREATE INDEX events_event_idx ON events (event, "offset");
CREATE INDEX events_data_idx ON events USING gin (data jsonb_path_ops);

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
                conds := conds || format('e.event = ANY (%L::text[])',
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

-- Lock keys live in the two-int4 advisory key space under this class; key 0
-- is the global key.
CREATE FUNCTION fstore_dcb_lock_class() RETURNS INT
    LANGUAGE sql
    IMMUTABLE AS
$$
SELECT 1718843255
$$;

-- One lock key, never 0 (the global key).
CREATE FUNCTION fstore_dcb_key(v_key TEXT) RETURNS INT
    LANGUAGE sql
    IMMUTABLE AS
$$
SELECT CASE WHEN h = 0 THEN 1 ELSE h END
FROM hashtext(v_key) h
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

-- The keys an appended event holds: its type, and each of its top-level fields.
CREATE FUNCTION fstore_event_keys(v_event TEXT, v_data JSONB) RETURNS SETOF INT
    LANGUAGE sql
    IMMUTABLE AS
$$
SELECT fstore_dcb_key('type:' || v_event)
UNION
SELECT fstore_field_key(f.key, f.value)
FROM jsonb_each(CASE WHEN jsonb_typeof(v_data) = 'object' THEN v_data END) f
$$;

-- The keys a query locks: per item, the key of one field of its matches (a
-- scalar one when there is one), else the keys of its types. An event
-- matching the item holds that key. NULL when an item matches every event.
CREATE FUNCTION fstore_query_keys(v_query JSONB) RETURNS INT[]
    LANGUAGE plpgsql
    IMMUTABLE AS
$$
DECLARE
    item JSONB;
    keys INT[] := '{}';
    k    INT;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(v_query -> 'items')
        LOOP
            SELECT fstore_field_key(f.key, f.value)
            INTO k
            FROM jsonb_array_elements(item -> 'matches') m,
                 jsonb_each(m.value) f
            ORDER BY jsonb_typeof(f.value) IN ('object', 'array'), f.key
            LIMIT 1;
            IF k IS NOT NULL THEN
                keys := keys || k;
            ELSIF item ? 'types' THEN
                keys := keys || ARRAY(SELECT fstore_dcb_key('type:' || t)
                                      FROM jsonb_array_elements_text(item -> 'types') t);
            ELSE
                RETURN NULL;
            END IF;
        END LOOP;
    RETURN keys;
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
    c     INT := fstore_dcb_lock_class();
    qkeys INT[];
    r     RECORD;
BEGIN
    PERFORM fstore_query_sql(v_query); -- validates
    qkeys := fstore_query_keys(v_query);
    IF qkeys IS NULL OR cardinality(qkeys) > 64
        OR (SELECT count(DISTINCT k) FROM unnest(v_events, v_data) u(e, d), fstore_event_keys(u.e, u.d) k) > 64 THEN
        PERFORM pg_advisory_xact_lock(c, 0);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(c, 0);
        FOR r IN SELECT k, bool_or(exclusive) AS exclusive
                 FROM (SELECT unnest(qkeys) AS k, TRUE AS exclusive
                       UNION ALL
                       SELECT k, FALSE
                       FROM unnest(v_events, v_data) u(e, d),
                            fstore_event_keys(u.e, u.d) k) keys
                 GROUP BY k
                 ORDER BY k
            LOOP
                IF r.exclusive THEN
                    PERFORM pg_advisory_xact_lock(c, r.k);
                ELSE
                    PERFORM pg_advisory_xact_lock_shared(c, r.k);
                END IF;
            END LOOP;
    END IF;
    PERFORM set_config('fstore.conditional', 'on', true);
END;
$$;

-- Step 3, after the INSERT: wait for the unconditional writers that may hold
-- an offset below the appended events' (v_own: their event_ids), then return
-- the lowest offset above v_after of an event matching v_query other than
-- them; NULL when the condition holds. Each wait takes the writer's horizon
-- key exclusively inside a subtransaction that is then rolled back, which
-- releases it at once.
CREATE FUNCTION fstore_condition_check(v_query JSONB, v_after BIGINT, v_own UUID[]) RETURNS BIGINT
    LANGUAGE plpgsql AS
$$
DECLARE
    v_max BIGINT;
    k     BIGINT;
    v_found BIGINT;
BEGIN
    PERFORM set_config('fstore.conditional', 'off', true);
    SELECT max(e."offset") INTO v_max FROM events e WHERE e.event_id = ANY (v_own);
    v_max := COALESCE(v_max, pg_sequence_last_value('events_offset_seq'), 0);
    BEGIN
        FOR k IN SELECT DISTINCT (l.classid::BIGINT << 32) | l.objid::BIGINT AS key
                 FROM pg_locks l
                 WHERE l.locktype = 'advisory'
                   AND l.objsubid = 1
                   AND l.classid::BIGINT >= 2147483648
                   AND l.granted
                   AND l.pid <> pg_backend_pid()
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND -((l.classid::BIGINT << 32) | l.objid::BIGINT) <= v_max
                 ORDER BY 1 DESC
            LOOP
                PERFORM pg_advisory_xact_lock(k);
            END LOOP;
        RAISE EXCEPTION USING ERRCODE = 'FSW00';
    EXCEPTION
        WHEN SQLSTATE 'FSW00' THEN NULL;
    END;
    EXECUTE format('SELECT e."offset" FROM events e WHERE e."offset" > $1 AND NOT (e.event_id = ANY ($2)) AND %s
                    ORDER BY e."offset" LIMIT 1', fstore_query_sql(v_query))
        INTO v_found USING v_after, COALESCE(v_own, '{}');
    RETURN v_found;
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
    p BIGINT := COALESCE(v_position, query_position());
BEGIN
    RETURN QUERY EXECUTE format('SELECT * FROM events e WHERE e."offset" > $1 AND e."offset" <= $2 AND %s
                                 ORDER BY e."offset" LIMIT $3', fstore_query_sql(v_query))
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
    ids   UUID[];
    v_found BIGINT;
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
    v_found := fstore_condition_check(v_query, v_after, ids);
    IF v_found IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FS009',
            MESSAGE = format('condition failed: the event at offset %s matches the query and is above position %s',
                             v_found, v_after);
    END IF;
    RETURN QUERY SELECT * FROM events e WHERE e.event_id = ANY (ids) ORDER BY e."offset";
END;
$$;
