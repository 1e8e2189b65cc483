-- fstore 0004: event metadata and tags.
--
-- An event may carry metadata, a JSON object beside its payload (who did it,
-- from which request, which schema, the request's trace context), and tags,
-- strings such as 'course:c-1' that the query model of the DCB specification
-- (dcb.events) selects events by.
--
-- Tags are stored sorted in byte order (COLLATE "C": the order of Go's
-- sort.Strings, whatever the database's collation) and without duplicates, so
-- that a retry sending the same tags in another order is the same event. The
-- append functions normalise them (fstore_tags); an INSERT of your own must
-- store them normalised too.
--
-- A retry is identical when everything but metadata's "traceparent" and
-- "tracestate" is: those describe the request that stored the event, and a
-- client's retry is a new request with a trace context of its own. The stored
-- ones are kept.
--
-- Adding a column with a constant default rewrites nothing (PostgreSQL keeps
-- the default in the catalog): the migration is instant on a log of any size.
-- Its checks are NOT VALID for the same reason: the rows already stored hold
-- the defaults, which pass them, and every new row is checked.

ALTER TABLE events
    ADD COLUMN metadata JSONB              NOT NULL DEFAULT '{}',
    ADD COLUMN tags     TEXT[] COLLATE "C" NOT NULL DEFAULT '{}';
ALTER TABLE events
    ADD CONSTRAINT events_metadata_check CHECK (jsonb_typeof(metadata) = 'object') NOT VALID,
    ADD CONSTRAINT events_tags_check CHECK (cardinality(tags) <= 100 AND COALESCE(array_ndims(tags), 1) = 1) NOT VALID;

-- The metadata keys a retry may change (see above).
CREATE FUNCTION fstore_retry_metadata(v_metadata JSONB) RETURNS JSONB
    LANGUAGE sql
    IMMUTABLE AS
$$
SELECT COALESCE(v_metadata, '{}') - '{traceparent,tracestate}'::TEXT[]
$$;

-- Tags as stored: sorted in byte order, without duplicates. Raises 22023 for
-- more than 100 tags, or a tag that is not 1 to 255 characters without
-- control characters (the rule of every name in fstore).
CREATE FUNCTION fstore_tags(v_tags TEXT[]) RETURNS TEXT[]
    LANGUAGE plpgsql
    IMMUTABLE AS
$$
DECLARE
    bad TEXT;
BEGIN
    IF v_tags IS NULL OR cardinality(v_tags) = 0 THEN
        RETURN '{}';
    END IF;
    IF cardinality(v_tags) > 100 OR array_ndims(v_tags) > 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('tags must be a list of at most 100 tags, not %s', cardinality(v_tags));
    END IF;
    SELECT t INTO bad
    FROM unnest(v_tags) t
    WHERE t IS NULL OR char_length(t) NOT BETWEEN 1 AND 255 OR t ~ '[\u0001-\u001f\u007f-\u009f]'
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('tag %L must be 1 to 255 characters, with no control characters', bad);
    END IF;
    RETURN ARRAY(SELECT DISTINCT t COLLATE "C" FROM unnest(v_tags) t ORDER BY 1);
END;
$$;

-- The tags of an event given as JSON ({"tags": [...]}, as append_events_if
-- takes events), as stored.
CREATE FUNCTION fstore_json_tags(v_tags JSONB) RETURNS TEXT[]
    LANGUAGE plpgsql
    IMMUTABLE AS
$$
BEGIN
    IF v_tags IS NULL OR v_tags = 'null' THEN
        RETURN '{}';
    END IF;
    IF jsonb_typeof(v_tags) <> 'array'
        OR EXISTS(SELECT 1 FROM jsonb_array_elements(v_tags) t WHERE jsonb_typeof(t) <> 'string') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('tags must be a JSON array of strings, not %s', v_tags);
    END IF;
    RETURN fstore_tags(ARRAY(SELECT jsonb_array_elements_text(v_tags)));
END;
$$;

-- API: append one event (0001), now with tags and metadata. Calls without them
-- work as before.
-- Example: SELECT * FROM append_event('event1', gen_random_uuid(), 'decider1', 'order-1', '{}',
--                                      gen_random_uuid(), NULL, v_tags => '{customer:c-7}',
--                                      v_metadata => '{"user": "ada"}');
DROP FUNCTION append_event(TEXT, UUID, TEXT, TEXT, JSONB, UUID, UUID, BIGINT, BOOLEAN);
CREATE FUNCTION append_event(v_event TEXT, v_event_id UUID, v_decider TEXT, v_decider_id TEXT, v_data JSONB,
                             v_command_id UUID, v_previous_id UUID, v_event_version BIGINT DEFAULT 1,
                             v_final BOOLEAN DEFAULT FALSE, v_tags TEXT[] DEFAULT '{}',
                             v_metadata JSONB DEFAULT '{}')
    RETURNS SETOF events
    LANGUAGE plpgsql AS
$$
DECLARE
    norm TEXT[] := fstore_tags(v_tags);
BEGIN
    RETURN QUERY INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id,
                                     previous_id, final, metadata, tags)
        VALUES (v_event, v_event_id, v_event_version, v_decider, v_decider_id, v_data, v_command_id,
                v_previous_id, v_final, COALESCE(v_metadata, '{}'), norm)
        ON CONFLICT ON CONSTRAINT events_event_id_key DO NOTHING
        RETURNING *;
    IF NOT FOUND THEN
        RETURN QUERY SELECT *
                     FROM events e
                     WHERE e.event_id = v_event_id
                       AND e.event = v_event
                       AND e.event_version = v_event_version
                       AND e.decider = v_decider
                       AND e.decider_id = v_decider_id
                       AND e.data = v_data
                       AND e.command_id = v_command_id
                       AND e.previous_id IS NOT DISTINCT FROM v_previous_id
                       AND e.final = v_final
                       AND e.tags = norm
                       AND fstore_retry_metadata(e.metadata) = fstore_retry_metadata(v_metadata);
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'FS003',
                MESSAGE = format('event_id %s is already stored with other content', v_event_id);
        END IF;
    END IF;
END;
$$;

-- API: append events on a condition (0003); an event may now carry "tags" (a
-- JSON array of strings) and "metadata" (a JSON object).
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
                                  ARRAY(SELECT e -> 'data' FROM jsonb_array_elements(v_events) e));
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

-- API: lease work (0002), now returning each event's metadata and tags.
DROP FUNCTION stream_events(TEXT, INT, BIGINT, INT);
CREATE FUNCTION stream_events(v_view TEXT, v_limit INT DEFAULT 1, v_lock_timeout_s BIGINT DEFAULT NULL,
                              v_max_per_partition INT DEFAULT 1)
    RETURNS TABLE
            (
                lease_id      UUID,
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
    LANGUAGE plpgsql AS
$$
DECLARE
    timeout BIGINT;
BEGIN
    SELECT COALESCE(v_lock_timeout_s, w.lock_timeout_s) INTO timeout FROM views w WHERE w.view = v_view;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FS006', MESSAGE = format('view %L does not exist', v_view);
    END IF;
    PERFORM fstore_discover(v_view);
    RETURN QUERY
        WITH picked AS (SELECT p.decider, p.decider_id, p.acked_offset
                        FROM view_partitions p
                        WHERE p.view = v_view
                          AND p.head_offset > p.acked_offset
                          AND NOT p.parked
                          AND (p.leased_until IS NULL OR p.leased_until < now())
                          AND (p.retry_at IS NULL OR p.retry_at <= now())
                        ORDER BY p.last_leased_at NULLS FIRST
                        LIMIT v_limit FOR UPDATE SKIP LOCKED),
             evs AS (SELECT e.*
                     FROM picked pk
                              CROSS JOIN LATERAL (SELECT *
                                                  FROM events e
                                                  WHERE e.decider = pk.decider
                                                    AND e.decider_id = pk.decider_id
                                                    AND e."offset" > pk.acked_offset
                                                  ORDER BY e."offset"
                                                  LIMIT v_max_per_partition) e),
             leased AS (UPDATE view_partitions p
                 SET lease_id = gen_random_uuid(),
                     leased_until = now() + make_interval(secs => timeout),
                     leased_to = x.last_offset,
                     last_leased_at = clock_timestamp(),
                     retry_at = NULL
                 FROM (SELECT evs.decider, evs.decider_id, max(evs."offset") AS last_offset
                       FROM evs
                       GROUP BY evs.decider, evs.decider_id) x
                 WHERE p.view = v_view
                   AND p.decider = x.decider
                   AND p.decider_id = x.decider_id
                 RETURNING p.decider, p.decider_id, p.lease_id)
        SELECT l.lease_id, evs.event, evs.event_id, evs.event_version, evs.decider, evs.decider_id, evs.data,
               evs.command_id, evs.previous_id, evs.final, evs.created_at, evs."offset", evs.metadata, evs.tags
        FROM evs
                 JOIN leased l ON l.decider = evs.decider AND l.decider_id = evs.decider_id
        ORDER BY evs."offset";
END;
$$;
