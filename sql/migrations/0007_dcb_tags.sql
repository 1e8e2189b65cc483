-- fstore 0007: queries by tags, the query model of the DCB specification.
--
-- A query item (0003) may now hold "tags": a non-empty list of tags the
-- event must all carry, beside "types" (one of them) and "matches" (data
-- containing each). So {"items": [{"types": ["course_defined"], "tags":
-- ["course:c-1"]}]} is a DCB query as the specification writes it.
--
-- The race-freedom argument of 0003 holds unchanged: an event holds a lock
-- key for each of its tags, and an item with tags locks the key of one of
-- them (every event matching the item carries it).

-- Tag queries read a GIN index on tags. It is partial: an untagged event is
-- not in it, so appends without tags pay nothing for it. Its fast-update
-- pending list is bounded like events_data_idx's (0003), for the same reason:
-- every query reads the whole list.
CREATE INDEX IF NOT EXISTS events_tags_idx ON events USING gin (tags) WITH (gin_pending_list_limit = 64)
    WHERE tags <> '{}';

-- The first of v_tags that is not 1 to 255 characters without control
-- characters, the rule of every name in fstore; NULL when all are.
CREATE FUNCTION fstore_bad_tag(v_tags TEXT[]) RETURNS TEXT
    LANGUAGE sql
    IMMUTABLE AS
$$
SELECT t
FROM unnest(v_tags) t
WHERE t IS NULL OR char_length(t) NOT BETWEEN 1 AND 255 OR t ~ '[\u0001-\u001f\u007f-\u009f]'
LIMIT 1
$$;

-- The boolean SQL expression (over the alias e) of a query, validated (0003,
-- now with tags); raises FS010 for a malformed query. "e.tags <> '{}'" beside
-- a tag test lets the planner use the partial index.
CREATE OR REPLACE FUNCTION fstore_query_sql(v_query JSONB) RETURNS TEXT
    LANGUAGE plpgsql
    IMMUTABLE
    SET plan_cache_mode = force_generic_plan AS
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
            IF jsonb_typeof(item) IS DISTINCT FROM 'object' OR (item - 'types' - 'tags' - 'matches') <> '{}' THEN
                RAISE EXCEPTION USING ERRCODE = 'FS010',
                    MESSAGE = format('query item %s must be an object with only "types", "tags" and "matches"', i);
            END IF;
            IF item ? 'types' THEN
                IF jsonb_typeof(item -> 'types') IS DISTINCT FROM 'array' OR jsonb_array_length(item -> 'types') = 0
                    OR EXISTS(SELECT 1 FROM jsonb_array_elements(item -> 'types') t WHERE jsonb_typeof(t) <> 'string') THEN
                    RAISE EXCEPTION USING ERRCODE = 'FS010',
                        MESSAGE = format('query item %s: types must be a non-empty array of event types', i);
                END IF;
                -- With tags or matches, "IS TRUE" keeps the type test out of
                -- the index scans: the planner would otherwise AND a bitmap
                -- of every event of those types with the few the GIN indexes
                -- find.
                conds := conds || format(CASE WHEN item ? 'matches' OR item ? 'tags'
                                                  THEN '(e.event = ANY (%L::text[])) IS TRUE'
                                              ELSE 'e.event = ANY (%L::text[])' END,
                                         (SELECT array_agg(t) FROM jsonb_array_elements_text(item -> 'types') t));
            END IF;
            IF item ? 'tags' THEN
                IF jsonb_typeof(item -> 'tags') IS DISTINCT FROM 'array'
                    OR jsonb_array_length(item -> 'tags') NOT BETWEEN 1 AND 100
                    OR EXISTS(SELECT 1 FROM jsonb_array_elements(item -> 'tags') t WHERE jsonb_typeof(t) <> 'string')
                    OR fstore_bad_tag(ARRAY(SELECT jsonb_array_elements_text(item -> 'tags'))) IS NOT NULL THEN
                    RAISE EXCEPTION USING ERRCODE = 'FS010',
                        MESSAGE = format('query item %s: tags must be 1 to 100 tags, each 1 to 255 characters '
                                             'with no control characters', i);
                END IF;
                conds := conds || format('(e.tags <> ''{}'' AND e.tags @> %L::text[])', fstore_json_tags(item -> 'tags'));
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

-- The key of a tag.
CREATE FUNCTION fstore_tag_key(v_tag TEXT) RETURNS INT
    LANGUAGE sql
    IMMUTABLE AS
$$
SELECT fstore_dcb_key('tag:' || v_tag)
$$;

-- The keys appended events hold (0003): each one's type, each of its
-- top-level fields, and each of its tags (v_tags: the tags of every event, in
-- one list).
DROP FUNCTION fstore_event_keys(TEXT[], JSONB[]);
CREATE FUNCTION fstore_event_keys(v_events TEXT[], v_data JSONB[], v_tags TEXT[] DEFAULT '{}') RETURNS INT[]
    LANGUAGE plpgsql
    IMMUTABLE
    SET plan_cache_mode = force_generic_plan AS
$$
BEGIN
    RETURN ARRAY(SELECT fstore_dcb_key('type:' || e)
                 FROM unnest(v_events) e
                 UNION
                 SELECT fstore_field_key(f.key, f.value)
                 FROM unnest(v_data) d,
                      jsonb_each(CASE WHEN jsonb_typeof(d) = 'object' THEN d END) f
                 UNION
                 SELECT fstore_tag_key(t)
                 FROM unnest(v_tags) t);
END;
$$;

-- The keys a query locks (0003): per item, the key of one of its tags (the
-- least), else of one field of its matches, else the keys of its types. An
-- event matching the item holds that key. NULL when an item matches every
-- event.
CREATE OR REPLACE FUNCTION fstore_query_keys(v_query JSONB) RETURNS INT[]
    LANGUAGE plpgsql
    IMMUTABLE
    SET plan_cache_mode = force_generic_plan AS
$$
BEGIN
    RETURN (SELECT CASE WHEN bool_and(k.keys IS NOT NULL) THEN array_agg(DISTINCT u) END
            FROM jsonb_array_elements(v_query -> 'items') item,
                 LATERAL (SELECT COALESCE(
                                         (SELECT ARRAY [fstore_tag_key(min(t COLLATE "C"))]
                                          FROM jsonb_array_elements_text(item -> 'tags') t
                                          HAVING count(*) > 0),
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

-- Takes a conditional append's locks (0003): an exclusive lock for every key
-- of its queries (v_qkeys) and a shared one for every key of its events
-- (v_ekeys), in ascending key order, after the global key shared; or, when
-- v_global, the global key exclusively instead.
CREATE FUNCTION fstore_lock_keys(v_qkeys INT[], v_ekeys INT[], v_global BOOLEAN) RETURNS VOID
    LANGUAGE plpgsql AS
$$
DECLARE
    keys INT[];
    k    INT;
BEGIN
    IF v_global THEN
        PERFORM pg_advisory_xact_lock(1718843255, 0);
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1718843255, 0);
    SELECT array_agg(DISTINCT x ORDER BY x) INTO keys FROM unnest(v_qkeys || v_ekeys) x;
    FOREACH k IN ARRAY COALESCE(keys, '{}')
        LOOP
            IF k = ANY (v_qkeys) THEN
                PERFORM pg_advisory_xact_lock(1718843255, k);
            ELSE
                PERFORM pg_advisory_xact_lock_shared(1718843255, k);
            END IF;
        END LOOP;
END;
$$;

-- Step 1 of a conditional append (0003), now with the appended events' tags
-- (all of them, in one list). Calls without them lock as before.
DROP FUNCTION fstore_condition_lock(JSONB, TEXT[], JSONB[]);
CREATE FUNCTION fstore_condition_lock(v_query JSONB, v_events TEXT[], v_data JSONB[], v_tags TEXT[] DEFAULT '{}')
    RETURNS VOID
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan AS
$$
DECLARE
    qkeys INT[];
    ekeys INT[];
BEGIN
    PERFORM fstore_query_sql(v_query); -- validates
    qkeys := fstore_query_keys(v_query);
    ekeys := fstore_event_keys(v_events, v_data, COALESCE(v_tags, '{}'));
    PERFORM fstore_lock_keys(qkeys, ekeys, qkeys IS NULL OR cardinality(qkeys) + cardinality(ekeys) > 64);
    PERFORM set_config('fstore.conditional', 'on', true);
END;
$$;

-- A tag query is a query whose every item has tags and no matches: the
-- query of the DCB specification. It is answered by a statement that is
-- planned once per session (plan_cache_mode = force_generic_plan), not for
-- every query as a query with matches is: planning a query of events costs
-- more than running it (measured: about 0.25 ms against 0.05 ms). Without
-- the tags' values the plan expects thousands of rows, so it would run in
-- parallel: starting the workers cost 20 ms and more CPU than the query, and
-- a decision's tags select a few events, so parallel plans are off.
--
-- It is passed flattened: item i's tags are v_tags[v_tags_from[i] :
-- v_tags_to[i]] and its types v_types[v_types_from[i] : v_types_to[i]] (an
-- empty slice: any type). An event carrying every tag of an item carries its
-- first one, so the index is read for the first tag of every item (&&) and
-- each candidate tested against the items.

-- The flattened form of v_query, validated by fstore_query_sql; NULLs when
-- it is not a tag query.
CREATE FUNCTION fstore_tag_items(v_query JSONB, OUT tags TEXT[], OUT tags_from INT[], OUT tags_to INT[],
                                 OUT types TEXT[], OUT types_from INT[], OUT types_to INT[])
    LANGUAGE plpgsql
    IMMUTABLE
    SET plan_cache_mode = force_generic_plan AS
$$
DECLARE
    item JSONB;
BEGIN
    IF EXISTS(SELECT 1 FROM jsonb_array_elements(v_query -> 'items') i WHERE NOT i ? 'tags' OR i ? 'matches') THEN
        RETURN;
    END IF;
    tags := '{}';
    types := '{}';
    FOR item IN SELECT value FROM jsonb_array_elements(v_query -> 'items')
        LOOP
            tags_from := tags_from || (cardinality(tags) + 1);
            tags := tags || fstore_json_tags(item -> 'tags');
            tags_to := tags_to || cardinality(tags);
            types_from := types_from || (cardinality(types) + 1);
            types := types || ARRAY(SELECT jsonb_array_elements_text(COALESCE(item -> 'types', '[]')));
            types_to := types_to || cardinality(types);
        END LOOP;
END;
$$;

-- The events of a tag query with v_after < offset <= v_position, in offset
-- order, at most v_limit. The bounds are filters (see query_events, 0003).
CREATE FUNCTION fstore_tag_events(v_tags TEXT[], v_tags_from INT[], v_tags_to INT[], v_types TEXT[],
                                  v_types_from INT[], v_types_to INT[], v_after BIGINT, v_position BIGINT,
                                  v_limit INT)
    RETURNS SETOF events
    LANGUAGE plpgsql
    STABLE
    SET plan_cache_mode = force_generic_plan
    SET max_parallel_workers_per_gather = 0 AS
$$
DECLARE
    firsts TEXT[] := ARRAY(SELECT v_tags[f] FROM unnest(v_tags_from) f);
BEGIN
    RETURN QUERY SELECT e.*
                 FROM events e
                 WHERE e.tags <> '{}'
                   AND e.tags && firsts
                   AND (e."offset" > v_after) IS TRUE
                   AND (e."offset" <= v_position) IS TRUE
                   AND EXISTS(SELECT 1
                              FROM unnest(v_tags_from, v_tags_to, v_types_from, v_types_to) AS i(tf, tt, yf, yt)
                              WHERE e.tags @> v_tags[i.tf:i.tt]
                                AND (i.yt < i.yf OR e.event = ANY (v_types[i.yf:i.yt])))
                 ORDER BY e."offset" + 0
                 LIMIT v_limit;
END;
$$;

-- The lowest offset of an event matching a tag query with v_after < offset <
-- v_below, other than v_own; NULL when there is none (a condition's check).
-- A decision's check usually covers the few events stored since its read:
-- they are read by offset, at the end of the log, where they lie together.
-- Read through the tags' index instead, every event of those tags was
-- fetched only to be left out by its offset (measured: 0.44 ms a check for
-- a reader's 40 loans, against 0.05 ms). A long range is read by the tags.
CREATE FUNCTION fstore_tag_min(v_tags TEXT[], v_tags_from INT[], v_tags_to INT[], v_types TEXT[],
                               v_types_from INT[], v_types_to INT[], v_after BIGINT, v_below BIGINT,
                               v_own UUID[] DEFAULT '{}')
    RETURNS BIGINT
    LANGUAGE plpgsql
    VOLATILE
    SET plan_cache_mode = force_generic_plan
    SET max_parallel_workers_per_gather = 0 AS
$$
DECLARE
    firsts TEXT[] := ARRAY(SELECT v_tags[f] FROM unnest(v_tags_from) f);
    hit    BIGINT;
BEGIN
    IF v_below - v_after <= 1000 THEN
        SELECT min(e."offset")
        INTO hit
        FROM events e
        WHERE e."offset" > v_after
          AND e."offset" < v_below
          AND (e.tags && firsts) IS TRUE
          AND NOT (e.event_id = ANY (v_own))
          AND EXISTS(SELECT 1
                     FROM unnest(v_tags_from, v_tags_to, v_types_from, v_types_to) AS i(tf, tt, yf, yt)
                     WHERE e.tags @> v_tags[i.tf:i.tt]
                       AND (i.yt < i.yf OR e.event = ANY (v_types[i.yf:i.yt])));
        RETURN hit;
    END IF;
    SELECT min(e."offset" + 0)
    INTO hit
    FROM events e
    WHERE e.tags <> '{}'
      AND e.tags && firsts
      AND (e."offset" > v_after) IS TRUE
      AND (e."offset" < v_below) IS TRUE
      AND NOT (e.event_id = ANY (v_own))
      AND EXISTS(SELECT 1
                 FROM unnest(v_tags_from, v_tags_to, v_types_from, v_types_to) AS i(tf, tt, yf, yt)
                 WHERE e.tags @> v_tags[i.tf:i.tt]
                   AND (i.yt < i.yf OR e.event = ANY (v_types[i.yf:i.yt])));
    RETURN hit;
END;
$$;

-- The lowest offset of an event matching any query with v_after < offset <
-- v_below, other than v_own: a tag query by fstore_tag_min, any other by a
-- statement planned for its values (0003).
CREATE FUNCTION fstore_query_min(v_query JSONB, v_after BIGINT, v_below BIGINT, v_own UUID[] DEFAULT '{}')
    RETURNS BIGINT
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    cond TEXT := fstore_query_sql(v_query); -- validates
    t    RECORD;
    hit  BIGINT;
BEGIN
    t := fstore_tag_items(v_query);
    IF t.tags IS NOT NULL THEN
        RETURN fstore_tag_min(t.tags, t.tags_from, t.tags_to, t.types, t.types_from, t.types_to, v_after, v_below,
                              COALESCE(v_own, '{}'));
    END IF;
    -- The bounds stay out of index scans but for a real lower bound, and
    -- min("offset" + 0), not ORDER BY "offset" LIMIT 1 (0003).
    EXECUTE format('SELECT min(e."offset" + 0) FROM events e WHERE %s (e."offset" < $2) IS TRUE
                    AND NOT (e.event_id = ANY ($3)) AND %s',
                   CASE WHEN v_after > 0 THEN 'e."offset" > $1 AND' ELSE '' END, cond)
        INTO hit USING v_after, v_below, COALESCE(v_own, '{}');
    RETURN hit;
END;
$$;

-- Step 3 of a conditional append (0003), now answering tag queries with
-- fstore_tag_min.
CREATE OR REPLACE FUNCTION fstore_condition_check(v_query JSONB, v_after BIGINT, v_own UUID[]) RETURNS BIGINT
    LANGUAGE plpgsql AS
$$
DECLARE
    v_max BIGINT;
BEGIN
    PERFORM set_config('fstore.conditional', 'off', true);
    SELECT max(e."offset") INTO v_max FROM events e WHERE e.event_id = ANY (v_own);
    v_max := COALESCE(v_max, pg_sequence_last_value('events_offset_seq') + 1, 1);
    PERFORM fstore_wait_for_writers(v_max);
    -- Events above v_max come after these in the log: the condition is not
    -- about them. (A conflicting conditional append cannot be among them and
    -- committed already: it waits for this one's locks before it allocates.)
    RETURN fstore_query_min(v_query, v_after, v_max, v_own);
END;
$$;

-- Waits for the unconditional writers that may hold an offset below
-- v_below: each holds a shared horizon lock keyed by a lower bound of its
-- offsets (0001). Each wait takes the writer's key exclusively inside a
-- subtransaction that is then rolled back, which releases it at once. Reads
-- pg_locks once: that costs about as much as the rest of a conditional
-- append, so a group of them (fstore_append_if_group) reads it once for all.
CREATE FUNCTION fstore_wait_for_writers(v_below BIGINT) RETURNS VOID
    LANGUAGE plpgsql AS
$$
DECLARE
    writers BIGINT[];
    k       BIGINT;
BEGIN
    SELECT array_agg(DISTINCT (l.classid::BIGINT << 32) | l.objid::BIGINT)
    INTO writers
    FROM pg_locks l
    WHERE l.locktype = 'advisory'
      AND l.objsubid = 1
      AND l.classid::BIGINT >= 2147483648
      AND l.granted
      AND l.pid <> pg_backend_pid()
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND -((l.classid::BIGINT << 32) | l.objid::BIGINT) <= v_below;
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
END;
$$;

-- API: the events matching v_query (0003), now with tags: a tag query is
-- answered by fstore_tag_events.
CREATE OR REPLACE FUNCTION query_events(v_query JSONB, v_after BIGINT DEFAULT 0, v_limit INT DEFAULT 1000,
                                        v_position BIGINT DEFAULT NULL)
    RETURNS SETOF events
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    p    BIGINT := COALESCE(v_position, query_position());
    cond TEXT   := fstore_query_sql(v_query); -- validates
    t    RECORD := fstore_tag_items(v_query);
    sort TEXT   := 'e."offset"';
BEGIN
    IF t.tags IS NOT NULL THEN
        RETURN QUERY SELECT *
                     FROM fstore_tag_events(t.tags, t.tags_from, t.tags_to, t.types, t.types_from, t.types_to,
                                            v_after, p, v_limit);
        RETURN;
    END IF;
    -- See 0003: "+ 0" keeps the planner from walking the primary key in
    -- order hoping for early matches; the bounds are filters.
    IF NOT EXISTS(SELECT 1 FROM jsonb_array_elements(v_query -> 'items') i WHERE NOT (i ? 'matches' OR i ? 'tags')) THEN
        sort := 'e."offset" + 0';
    END IF;
    RETURN QUERY EXECUTE format('SELECT * FROM events e WHERE %s (e."offset" <= $2) IS TRUE AND %s
                                 ORDER BY %s LIMIT $3',
                                CASE WHEN v_after > 0 THEN 'e."offset" > $1 AND' ELSE '' END, cond, sort)
        USING v_after, p, v_limit;
END;
$$;

-- API: append events on a condition (0003, 0004), locking the keys of their tags too.
CREATE OR REPLACE FUNCTION append_events_if(v_events JSONB, v_query JSONB, v_after BIGINT)
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
                                  ARRAY(SELECT e -> 'data' FROM jsonb_array_elements(v_events) e),
                                  ARRAY(SELECT t
                                        FROM jsonb_array_elements(v_events) e,
                                             unnest(fstore_json_tags(e -> 'tags')) t));
    WITH inserted AS (
        INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id, previous_id,
                            final, metadata, tags)
            SELECT e ->> 'event', (e ->> 'event_id')::UUID, COALESCE((e ->> 'event_version')::BIGINT, 1),
                   e ->> 'decider', e ->> 'decider_id', e -> 'data', (e ->> 'command_id')::UUID,
                   (e ->> 'previous_id')::UUID, COALESCE((e ->> 'final')::BOOLEAN, FALSE),
                   COALESCE(NULLIF(e -> 'metadata', 'null'), '{}'), fstore_json_tags(e -> 'tags')
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

-- The write-horizon trigger (0001, 0003) does nothing in a transaction that
-- took its horizon lock itself before allocating its offsets
-- (fstore_append_if_group): the lock it would take is above those offsets.
CREATE OR REPLACE FUNCTION fstore_lock_write_horizon() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    mode TEXT := current_setting('fstore.conditional', true);
    k    BIGINT;
BEGIN
    IF mode = 'held' THEN
        RETURN NULL;
    END IF;
    k := -(COALESCE(pg_sequence_last_value('events_offset_seq'), 0) + 1);
    IF mode = 'on' THEN
        PERFORM pg_advisory_xact_lock_shared((k >> 32)::INT, ((k << 32) >> 32)::INT);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(k);
    END IF;
    RETURN NULL;
END;
$$;

-- Conditional appends that arrive together, in one transaction: one commit,
-- one read of pg_locks, and each member's outcome its own, exactly as if the
-- members had run one after the other in this order.
--
-- Member m appends the events v_events_from[m] .. v_events_to[m] (indexes
-- into the event arrays, which are the columns of events; an event's tags are
-- v_tags[v_tags_from[i] : v_tags_to[i]]) on the condition v_queries[m] after
-- v_afters[m]. When v_items_from[m] .. v_items_to[m] is not empty, the query
-- is a tag query, given flattened (its items index the v_item_* arrays as in
-- fstore_tag_events) and checked by fstore_tag_min.
--
-- The proof of 0003 holds for the group as for one conditional append:
--   1. it takes, in ascending key order, every key of its members (exclusive
--      where a member's query has it), so it serialises with every
--      conditional transaction it could conflict with, and cannot deadlock
--      with one;
--   2. then it takes its horizon lock and allocates every member's offsets;
--   3. then it waits once for the unconditional writers below the highest of
--      them, appends the members' events, and checks each member below its
--      highest offset and but for its own events, as a conditional append
--      alone does: it sees every committed event, those of earlier members,
--      and no later member's (they are above).
-- All members are appended in one insert, in a subtransaction, when none
-- fails. Else that is rolled back and each member appended and checked in
-- turn, in a subtransaction of its own, so that a later member's check sees
-- only the members that were stored. A member whose insert or condition
-- fails is rolled back alone: code is the SQLSTATE, detail the offending
-- offset for FS009 (the condition), else the constraint or the message.
-- The offsets of members that appended nothing are gaps.
CREATE FUNCTION fstore_append_if_group(v_queries JSONB[], v_afters BIGINT[], v_events_from INT[],
                                       v_events_to INT[], v_items_from INT[], v_items_to INT[],
                                       v_item_tags TEXT[], v_item_tags_from INT[], v_item_tags_to INT[],
                                       v_item_types TEXT[], v_item_types_from INT[], v_item_types_to INT[],
                                       v_event TEXT[], v_event_id TEXT[], v_event_version BIGINT[],
                                       v_decider TEXT[], v_decider_id TEXT[], v_data TEXT[], v_command_id TEXT[],
                                       v_previous_id TEXT[], v_final BOOLEAN[], v_metadata TEXT[], v_tags TEXT[],
                                       v_tags_from INT[], v_tags_to INT[])
    RETURNS TABLE
            (
                member        INT,
                code          TEXT,
                detail        TEXT,
                event         TEXT,
                event_id      UUID,
                event_version BIGINT,
                decider       TEXT,
                decider_id    TEXT,
                data          JSONB,
                command_id    UUID,
                previous_id   UUID,
                final         BOOLEAN,
                created_at    TIMESTAMPTZ,
                "offset"      BIGINT,
                metadata      JSONB,
                tags          TEXT[]
            )
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan AS
$$
#variable_conflict use_column
DECLARE
    n      INT     := cardinality(v_afters);
    qkeys  INT[]   := '{}';
    mkeys  INT[];
    ekeys  INT[];
    global BOOLEAN := FALSE;
    hk     BIGINT;
    offs   BIGINT[];
    m      INT;
    k      INT;
    lo     INT;
    hi     INT;
    f      INT;
    t      INT;
    mem    INT[];
    bulk   BOOLEAN;
    hit    BIGINT;
    stored events[];
    ec      TEXT;
    ecn     TEXT;
    emsg    TEXT;
    edetail TEXT;
BEGIN
    -- 1. The keys, locked in ascending order.
    FOR m IN 1..n
        LOOP
            IF v_items_to[m] >= v_items_from[m] THEN
                mkeys := ARRAY(SELECT fstore_tag_key(v_item_tags[v_item_tags_from[i]])
                               FROM generate_series(v_items_from[m], v_items_to[m]) i);
            ELSE
                mkeys := fstore_query_keys(v_queries[m]);
            END IF;
            global := global OR mkeys IS NULL;
            qkeys := qkeys || mkeys;
        END LOOP;
    ekeys := fstore_event_keys(v_event, v_data::JSONB[], v_tags);
    PERFORM fstore_lock_keys(qkeys, ekeys, global OR cardinality(qkeys) + cardinality(ekeys) > 1024);
    -- 2. The horizon lock, in the conditional key space (0003), then the offsets.
    PERFORM set_config('fstore.conditional', 'held', true);
    hk := -(COALESCE(pg_sequence_last_value('events_offset_seq'), 0) + 1);
    PERFORM pg_advisory_xact_lock_shared((hk >> 32)::INT, ((hk << 32) >> 32)::INT);
    offs := ARRAY(SELECT nextval('events_offset_seq') FROM generate_series(1, cardinality(v_event)));
    -- 3. The unconditional writers below, once; then the members: all in
    -- one insert while none fails (the usual case), else each alone.
    PERFORM fstore_wait_for_writers(offs[cardinality(offs)]);
    mem := ARRAY(SELECT m FROM generate_series(1, n) m, generate_series(v_events_from[m], v_events_to[m]));
    bulk := n > 1;
    m := 1;
    WHILE m <= n
        LOOP
            lo := CASE WHEN bulk THEN 1 ELSE m END;
            hi := CASE WHEN bulk THEN n ELSE m END;
            f := v_events_from[lo];
            t := v_events_to[hi];
            BEGIN
                WITH inserted AS (
                    INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id,
                                        previous_id, final, metadata, tags, "offset")
                        SELECT i.event, i.event_id::UUID, i.event_version, i.decider, i.decider_id, i.data::JSONB,
                               i.command_id::UUID, i.previous_id::UUID, i.final, i.metadata::JSONB,
                               v_tags[i.tags_from:i.tags_to], i.off
                        FROM unnest(v_event[f:t], v_event_id[f:t], v_event_version[f:t], v_decider[f:t],
                                    v_decider_id[f:t], v_data[f:t], v_command_id[f:t], v_previous_id[f:t],
                                    v_final[f:t], v_metadata[f:t], v_tags_from[f:t], v_tags_to[f:t],
                                    offs[f:t]) WITH ORDINALITY
                                 AS i(event, event_id, event_version, decider, decider_id, data, command_id,
                                      previous_id, final, metadata, tags_from, tags_to, off, ord)
                        ORDER BY i.ord
                        RETURNING *)
                SELECT array_agg(inserted ORDER BY inserted."offset") INTO stored FROM inserted;
                -- Each member below its highest offset, but for its own events.
                FOR k IN lo..hi
                    LOOP
                        IF v_items_to[k] >= v_items_from[k] THEN
                            hit := fstore_tag_min(v_item_tags, v_item_tags_from[v_items_from[k]:v_items_to[k]],
                                                  v_item_tags_to[v_items_from[k]:v_items_to[k]], v_item_types,
                                                  v_item_types_from[v_items_from[k]:v_items_to[k]],
                                                  v_item_types_to[v_items_from[k]:v_items_to[k]], v_afters[k],
                                                  offs[v_events_to[k]],
                                                  v_event_id[v_events_from[k]:v_events_to[k]]::UUID[]);
                        ELSE
                            hit := fstore_query_min(v_queries[k], v_afters[k], offs[v_events_to[k]],
                                                    v_event_id[v_events_from[k]:v_events_to[k]]::UUID[]);
                        END IF;
                        IF hit IS NOT NULL THEN
                            RAISE EXCEPTION USING ERRCODE = 'FS009', DETAIL = hit::TEXT;
                        END IF;
                    END LOOP;
                RETURN QUERY SELECT mem[f - 1 + array_position(v_event_id[f:t], r.event_id::TEXT)], NULL::TEXT,
                                    NULL::TEXT, r.event, r.event_id, r.event_version, r.decider, r.decider_id, r.data,
                                    r.command_id, r.previous_id, r.final, r.created_at, r."offset", r.metadata, r.tags
                             FROM unnest(stored) r;
                IF bulk THEN
                    RETURN;
                END IF;
            EXCEPTION
                WHEN OTHERS THEN
                    IF bulk THEN
                        bulk := FALSE; -- rolled back: each member alone, from the first
                        CONTINUE;
                    END IF;
                    GET STACKED DIAGNOSTICS ec = RETURNED_SQLSTATE, ecn = CONSTRAINT_NAME, emsg = MESSAGE_TEXT,
                        edetail = PG_EXCEPTION_DETAIL;
                    RETURN QUERY SELECT m, ec, CASE WHEN ec = 'FS009' THEN edetail ELSE COALESCE(NULLIF(ecn, ''), emsg) END,
                                        NULL::TEXT, NULL::UUID, NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::JSONB,
                                        NULL::UUID, NULL::UUID, NULL::BOOLEAN, NULL::TIMESTAMPTZ, NULL::BIGINT,
                                        NULL::JSONB, NULL::TEXT[];
            END;
            m := m + 1;
        END LOOP;
END;
$$;

-- The append checks (0001) once per statement instead of once per row: a
-- plpgsql row trigger cost about 15 us of PostgreSQL's CPU per row, a
-- quarter of a batched row's cost (measured: 100-row inserts at 2 million
-- events, 67 against 51 us a row without it); one join of the statement's
-- new rows costs a fraction. The checks are those of fstore_check_append:
-- every row's type is registered, and its previous event (if any) belongs to
-- the same stream, is not final, and comes before it in the log (an event
-- of the same statement counts when it is earlier: a batch names earlier
-- events of its own). Rows an ON CONFLICT skipped are not checked: they were
-- when stored. The first failing row, in offset order, raises.
CREATE FUNCTION fstore_check_appends() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    bad RECORD;
BEGIN
    SELECT n.event, n.event_version, n.decider, n.decider_id, n.previous_id, d.decider IS NULL AS unregistered,
           COALESCE(p.final AND p.decider = n.decider AND p.decider_id = n.decider_id
                        AND p."offset" < n."offset", FALSE) AS after_final
    INTO bad
    FROM new_rows n
             LEFT JOIN deciders d ON d.decider = n.decider AND d.event = n.event AND d.event_version = n.event_version
             LEFT JOIN events p ON n.previous_id IS NOT NULL AND p.event_id = n.previous_id
    WHERE d.decider IS NULL
       OR (n.previous_id IS NOT NULL AND (p.event_id IS NULL OR p.decider <> n.decider OR p.decider_id <> n.decider_id
        OR p.final OR p."offset" >= n."offset"))
    ORDER BY n."offset"
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF bad.unregistered THEN
        RAISE EXCEPTION USING ERRCODE = 'FS005',
            MESSAGE = format('event type %L version %s is not registered for decider %L',
                             bad.event, bad.event_version, bad.decider);
    END IF;
    IF bad.after_final THEN
        RAISE EXCEPTION USING ERRCODE = 'FS002',
            MESSAGE = format('stream (%L, %L) is final: no event may follow', bad.decider, bad.decider_id);
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'FS001',
        MESSAGE = format('previous_id %s is not an event of stream (%L, %L)', bad.previous_id, bad.decider,
                         bad.decider_id);
END;
$$;

DROP TRIGGER events_check_append ON events;
DROP FUNCTION fstore_check_append();
CREATE TRIGGER events_check_appends
    AFTER INSERT
    ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
EXECUTE FUNCTION fstore_check_appends();
