-- fstore 0005: scoped views, and the tools to handle what fails.
--
-- Scope. A view may list deciders and event types (views.deciders,
-- views.events; NULL: every one). An event matches when its decider is
-- listed (or there is no list) and its type is listed (or there is no list).
-- Partitions are the streams holding a matching event after the view's
-- start; head_offset is the newest matching offset discovered; leases hand
-- out matching events only, and an ack of a handed-out offset settles the
-- non-matching events before it.
--
-- Cost follows the matching events: a scoped view discovers through
-- events_decider_idx (decider, offset) when it lists deciders, else through
-- events_event_idx (event, offset), and one pass reads at most about 50,000
-- candidate events, whatever the size of the log.
--
-- Changing the lists keeps progress: every partition keeps acked_offset;
-- head_offset is set back to it and the view is discovered again from its
-- start with the new lists, which raises head_offset to the newest matching
-- offset of every stream in scope (newly in scope: from the view's start).
-- So every matching event after a partition's progress is delivered, and
-- nothing at or below it is delivered again. A partition whose stream left
-- the scope keeps its progress (matched = false) and is not behind.
--
-- Failures. Every push attempt, a nack that says why, and a skip are kept in
-- view_attempts: the last 100 per partition (pruned by a per-partition
-- sequence, reading only what is deleted) and no longer than the retention
-- the dispatcher prunes by (an index on at). Acks clear last_error,
-- last_status and last_error_at: they describe the current failure only.
--
-- SQLSTATEs raised here:
--   FS014 not registered: a name in a view's lists is not registered (the
--         error's COLUMN names the list entry, e.g. deciders[2])
--   FS011 partition leased: skip and replay wait for the lease to end
--   FS012 not the next event: a skip names another offset than the
--         partition's next matching event
--   FS013 ahead of progress: a replay's after is above the partition's progress

ALTER TABLE views
    ADD COLUMN deciders TEXT[] CHECK (cardinality(deciders) BETWEEN 1 AND 100),
    ADD COLUMN events   TEXT[] CHECK (cardinality(events) BETWEEN 1 AND 100);

ALTER TABLE view_partitions
    -- The stream held a matching event at the last discovery; false after a
    -- change of the lists until discovery finds one again.
    ADD COLUMN matched     BOOLEAN NOT NULL DEFAULT TRUE,
    -- Attempts recorded for this partition so far: numbers its attempts.
    ADD COLUMN attempt_seq BIGINT  NOT NULL DEFAULT 0;

-- Partitions in trouble, for the failing/parked lists, the view's last error
-- and the bulk retry: small, whatever the number of healthy partitions.
CREATE INDEX view_partitions_trouble_idx ON view_partitions (view, decider, decider_id)
    WHERE attempts > 0 OR parked OR last_error IS NOT NULL;

-- One row per settlement: the attempts of one lease (up to 10 pushes), a
-- nack or a skip, as a JSON array, oldest first. One row, not one per
-- attempt: recording the pushes of a lease costs one small insert with its
-- settlement (10 rows halved the dispatcher's settling rate).
CREATE TABLE view_attempts
(
    view       TEXT        NOT NULL,
    decider    TEXT        NOT NULL,
    decider_id TEXT        NOT NULL,
    -- The number of the row's last attempt in the partition (attempt_seq),
    -- and how many attempts the row holds.
    seq        BIGINT      NOT NULL,
    n          INT         NOT NULL CHECK (n >= 1),
    -- The time of the row's last attempt: pruned by age on it.
    at         TIMESTAMPTZ NOT NULL,
    -- [{at, kind, event_id, offset, duration_ms, status, error, response}]:
    -- kind push (the dispatcher's POST; the default when absent), nack (a
    -- consumer gave the lease back saying why) or skip (an operator settled
    -- the event without delivery); status absent when there was no answer;
    -- response the first 1 KiB of the answer's body (absent: empty). Absent
    -- keys keep a lease's ten attempts small enough to stay in line,
    -- uncompressed.
    attempts   JSONB       NOT NULL CHECK (jsonb_typeof(attempts) = 'array'),
    CONSTRAINT view_attempts_pkey PRIMARY KEY (view, decider, decider_id, seq),
    CONSTRAINT view_attempts_partition_fkey FOREIGN KEY (view, decider, decider_id)
        REFERENCES view_partitions (view, decider, decider_id) ON DELETE CASCADE
);
CREATE INDEX view_attempts_at_idx ON view_attempts (at);

-- Adds attempts (a JSON array, as view_attempts.attempts holds them) to a
-- partition whose attempt_seq was already raised by their number to v_seq.
-- Every 50 attempts, drops the rows that hold none of the last 100: the
-- partition keeps its last 100 (and up to 49 more until the next prune),
-- reading only what it deletes.
CREATE FUNCTION fstore_add_attempts(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_seq BIGINT, v_attempts JSONB)
    RETURNS VOID
    LANGUAGE plpgsql AS
$$
DECLARE
    n INT := jsonb_array_length(v_attempts);
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    INSERT INTO view_attempts (view, decider, decider_id, seq, n, at, attempts)
    VALUES (v_view, v_decider, v_decider_id, v_seq, n, COALESCE((v_attempts -> (n - 1) ->> 'at')::TIMESTAMPTZ, now()),
            v_attempts);
    IF v_seq > 100 AND (v_seq - n) / 50 <> v_seq / 50 THEN
        DELETE FROM view_attempts
        WHERE view = v_view AND decider = v_decider AND decider_id = v_decider_id AND seq <= v_seq - 100;
    END IF;
END;
$$;

-- Discovery, scoped. An unscoped view scans at most 50,000 offsets per
-- pass, as before. A scoped view reads, per entry of its leading list
-- (deciders when given, else events), the next events of that entry through
-- its index, about 50,000 in all per pass; the pass ends at the lowest offset
-- where an entry stopped short, so the next pass resumes there.
CREATE OR REPLACE FUNCTION fstore_discover(v_view TEXT) RETURNS VOID
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    h        BIGINT;
    w        views;
    per      INT;
    upto     BIGINT;
    branches TEXT;
BEGIN
    IF NOT pg_try_advisory_xact_lock(1718843254, hashtext(v_view)) THEN
        RETURN;
    END IF;
    h := fstore_read_horizon();
    SELECT * INTO w FROM views WHERE view = v_view;
    IF NOT FOUND OR w.scanned_offset >= h - 1 THEN
        RETURN;
    END IF;
    IF w.deciders IS NULL AND w.events IS NULL THEN
        h := LEAST(h, w.scanned_offset + 50001);
        INSERT INTO view_partitions AS p (view, decider, decider_id, acked_offset, head_offset)
        SELECT v_view, e.decider, e.decider_id, w.start_offset, max(e."offset")
        FROM events e
        WHERE e."offset" > w.scanned_offset
          AND e."offset" < h
        GROUP BY e.decider, e.decider_id
        ON CONFLICT ON CONSTRAINT view_partitions_pkey
            DO UPDATE SET head_offset = GREATEST(p.head_offset, EXCLUDED.head_offset), matched = TRUE;
        UPDATE views SET scanned_offset = h - 1 WHERE view = v_view;
        RETURN;
    END IF;
    per := GREATEST(1, 50000 / cardinality(COALESCE(w.deciders, w.events)));
    -- One branch per entry, its name a literal: the planner sees which
    -- entry, so it walks that entry's index (a join parameter would leave it
    -- guessing, and it walked the primary key through the whole log).
    SELECT string_agg(format('(SELECT %L AS k, e.decider, e.decider_id, e.event, e."offset" FROM events e
                                WHERE e.%I = %L AND e."offset" > $1 AND e."offset" < $2
                                ORDER BY e."offset" LIMIT $3)',
                             x, CASE WHEN w.deciders IS NOT NULL THEN 'decider' ELSE 'event' END, x),
                      ' UNION ALL ')
    INTO branches
    FROM unnest(COALESCE(w.deciders, w.events)) AS x;
    EXECUTE format($q$
        WITH cand AS MATERIALIZED (
            SELECT c.*, row_number() OVER (PARTITION BY c.k ORDER BY c."offset") AS rn FROM (%s) c),
             bound AS (SELECT COALESCE(min(cand."offset"), $2 - 1) AS b FROM cand WHERE cand.rn = $3),
             ins AS (
                 INSERT INTO view_partitions AS p (view, decider, decider_id, acked_offset, head_offset)
                     SELECT $4, cand.decider, cand.decider_id, $6, max(cand."offset")
                     FROM cand, bound
                     WHERE cand."offset" <= bound.b
                       AND ($5::text[] IS NULL OR cand.event = ANY ($5::text[]))
                     GROUP BY cand.decider, cand.decider_id
                     ON CONFLICT ON CONSTRAINT view_partitions_pkey
                         DO UPDATE SET head_offset = GREATEST(p.head_offset, EXCLUDED.head_offset), matched = TRUE)
        SELECT bound.b FROM bound$q$, branches)
        INTO upto
        USING w.scanned_offset, h, per, v_view, CASE WHEN w.deciders IS NOT NULL THEN w.events END, w.start_offset;
    UPDATE views SET scanned_offset = upto WHERE view = v_view;
END;
$$;

-- The lists of a scoped view, sorted and without duplicates; NULL stays
-- NULL (no list). Refuses an empty list or one of more than 100 names.
CREATE FUNCTION fstore_scope_list(v_list TEXT[], v_field TEXT) RETURNS TEXT[]
    LANGUAGE plpgsql
    IMMUTABLE AS
$$
DECLARE
    out TEXT[];
BEGIN
    IF v_list IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(DISTINCT x ORDER BY x) INTO out FROM unnest(v_list) AS x;
    IF out IS NULL OR cardinality(out) > 100 OR array_position(out, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', COLUMN = v_field,
            MESSAGE = format('%s must list 1 to 100 names', v_field);
    END IF;
    RETURN out;
END;
$$;

-- Raises FS014 naming the first listed decider that has no registered event
-- type, or the first listed event type registered for none of the listed
-- deciders (for no decider, without a decider list).
CREATE FUNCTION fstore_check_scope(v_deciders TEXT[], v_events TEXT[]) RETURNS VOID
    LANGUAGE plpgsql
    STABLE AS
$$
DECLARE
    bad RECORD;
BEGIN
    SELECT k.x, k.i INTO bad
    FROM unnest(v_deciders) WITH ORDINALITY AS k(x, i)
    WHERE NOT EXISTS(SELECT 1 FROM deciders d WHERE d.decider = k.x)
    ORDER BY k.i
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FS014', COLUMN = format('deciders[%s]', bad.i - 1),
            MESSAGE = format('decider "%s" has no registered event types', bad.x);
    END IF;
    SELECT k.x, k.i INTO bad
    FROM unnest(v_events) WITH ORDINALITY AS k(x, i)
    WHERE NOT EXISTS(SELECT 1
                     FROM deciders d
                     WHERE d.event = k.x
                       AND (v_deciders IS NULL OR d.decider = ANY (v_deciders)))
    ORDER BY k.i
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FS014', COLUMN = format('events[%s]', bad.i - 1),
            MESSAGE = CASE
                          WHEN v_deciders IS NULL THEN format('event type "%s" is not registered', bad.x)
                          ELSE format('event type "%s" is not registered for any of the listed deciders', bad.x)
                END;
    END IF;
END;
$$;

-- API: register or update a view; as in 0002, with the view's lists
-- (v_deciders, v_events; NULL: every decider, every event type). The lists
-- are stored sorted, without duplicates. Changing them keeps every
-- partition's progress (see the top of this file); changing start_at too
-- moves every partition to the new start.
-- Example: SELECT * FROM register_view('orders', v_deciders => ARRAY['order']);
DROP FUNCTION register_view(TEXT, TIMESTAMPTZ, BIGINT, BIGINT, TEXT, TEXT);
CREATE FUNCTION register_view(v_view TEXT,
                              v_start_at TIMESTAMPTZ DEFAULT NULL,
                              v_lock_timeout_s BIGINT DEFAULT 300,
                              v_pooling_delay_s BIGINT DEFAULT NULL,
                              v_edge_function_url TEXT DEFAULT NULL,
                              v_secret TEXT DEFAULT NULL,
                              v_deciders TEXT[] DEFAULT NULL,
                              v_events TEXT[] DEFAULT NULL)
    RETURNS SETOF views
    LANGUAGE plpgsql AS
$$
DECLARE
    cur views;
    pos BIGINT;
BEGIN
    -- Checked as given, so that the entry named is the caller's.
    PERFORM fstore_check_scope(v_deciders, v_events);
    v_deciders := fstore_scope_list(v_deciders, 'deciders');
    v_events := fstore_scope_list(v_events, 'events');
    -- Discovery must not run between reading the view and changing its
    -- scan: it would finish a pass with the old start or lists over the
    -- new ones. Taken before the row lock, in discovery's order.
    PERFORM pg_advisory_xact_lock(1718843254, hashtext(v_view));
    SELECT * INTO cur FROM views WHERE view = v_view FOR UPDATE;
    IF NOT FOUND THEN
        pos := fstore_offset_at(COALESCE(v_start_at, now()));
        RETURN QUERY INSERT INTO views (view, start_at, start_offset, scanned_offset, lock_timeout_s,
                                        pooling_delay_s, edge_function_url, secret, deciders, events)
            VALUES (v_view, COALESCE(v_start_at, now()), pos, pos, COALESCE(v_lock_timeout_s, 300),
                    v_pooling_delay_s, v_edge_function_url,
                    COALESCE(v_secret, CASE WHEN v_edge_function_url IS NOT NULL THEN fstore_new_secret() END),
                    v_deciders, v_events)
            ON CONFLICT ON CONSTRAINT views_pkey DO NOTHING
            RETURNING *;
        IF FOUND THEN
            RETURN;
        END IF;
        SELECT * INTO cur FROM views WHERE view = v_view FOR UPDATE;
    END IF;
    IF v_start_at IS NOT NULL AND v_start_at IS DISTINCT FROM cur.start_at THEN
        pos := fstore_offset_at(v_start_at);
        DELETE FROM view_partitions WHERE view = v_view;
        cur.start_at := v_start_at;
        cur.start_offset := pos;
        cur.scanned_offset := pos;
    ELSIF v_deciders IS DISTINCT FROM cur.deciders OR v_events IS DISTINCT FROM cur.events THEN
        -- Keep progress; forget what was discovered with the old lists and
        -- discover again from the start with the new ones.
        UPDATE view_partitions
        SET head_offset = acked_offset,
            matched     = FALSE
        WHERE view = v_view;
        cur.scanned_offset := cur.start_offset;
    END IF;
    RETURN QUERY UPDATE views
        SET start_at          = cur.start_at,
            start_offset      = cur.start_offset,
            scanned_offset    = cur.scanned_offset,
            lock_timeout_s    = COALESCE(v_lock_timeout_s, 300),
            pooling_delay_s   = v_pooling_delay_s,
            edge_function_url = v_edge_function_url,
            deciders          = v_deciders,
            events            = v_events,
            secret            = COALESCE(v_secret, cur.secret,
                                         CASE WHEN v_edge_function_url IS NOT NULL THEN fstore_new_secret() END),
            previous_secret   = CASE WHEN v_secret IS DISTINCT FROM cur.secret AND v_secret IS NOT NULL
                                         THEN cur.secret ELSE cur.previous_secret END,
            previous_until    = CASE WHEN v_secret IS DISTINCT FROM cur.secret AND v_secret IS NOT NULL
                                         THEN now() + interval '24 hours' ELSE cur.previous_until END,
            dispatch_disabled_at     = NULL,
            dispatch_disabled_reason = NULL,
            updated_at        = clock_timestamp()
        WHERE view = v_view
        RETURNING *;
END;
$$;

-- API: lease work, as in 0002 and 0004 (every event column, metadata and
-- tags included), handing out only events that match the view's lists, and
-- each row with its partition's failed attempts so far
-- (a consumer may back off or give up on a poison event). A picked
-- partition with nothing to hand out goes to the back of the round-robin,
-- so that it can never hold the front.
-- Example: SELECT * FROM stream_events('view1', 10);
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
                tags          TEXT[],
                attempts      INT
            )
    LANGUAGE plpgsql AS
$$
DECLARE
    w       views;
    timeout BIGINT;
    ds      TEXT[];
    ids     TEXT[];
    ackeds  BIGINT[];
    atts    INT[];
BEGIN
    SELECT * INTO w FROM views WHERE views.view = v_view;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FS006', MESSAGE = format('view "%s" does not exist', v_view);
    END IF;
    timeout := COALESCE(v_lock_timeout_s, w.lock_timeout_s);
    PERFORM fstore_discover(v_view);
    -- First pick and lock, then lease, in two statements: an empty poll ends
    -- after the first, which reads only the partial index of partitions with
    -- work; and the second joins the few picked keys, so its plan looks them
    -- up by key (as one statement, the planner hashed the view's partitions
    -- to update none of them, reading the table until a row of the view).
    SELECT array_agg(p.decider), array_agg(p.decider_id), array_agg(p.acked_offset), array_agg(p.attempts)
    INTO ds, ids, ackeds, atts
    FROM (SELECT p.decider, p.decider_id, p.acked_offset, p.attempts
          FROM view_partitions p
          WHERE p.view = v_view
            AND p.head_offset > p.acked_offset
            AND NOT p.parked
            AND (p.leased_until IS NULL OR p.leased_until < now())
            AND (p.retry_at IS NULL OR p.retry_at <= now())
            AND (w.deciders IS NULL OR p.decider = ANY (w.deciders))
          ORDER BY p.last_leased_at NULLS FIRST
          LIMIT v_limit FOR UPDATE SKIP LOCKED) p;
    IF ds IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
        WITH picked AS (SELECT * FROM unnest(ds, ids, ackeds, atts) AS pk(decider, decider_id, acked_offset, attempts)),
             evs AS (SELECT e.*, pk.attempts
                     FROM picked pk
                              CROSS JOIN LATERAL (SELECT *
                                                  FROM events e
                                                  WHERE e.decider = pk.decider
                                                    AND e.decider_id = pk.decider_id
                                                    AND e."offset" > pk.acked_offset
                                                    AND (w.events IS NULL OR e.event = ANY (w.events))
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
                 RETURNING p.decider, p.decider_id, p.lease_id),
             idle AS (UPDATE view_partitions p
                 SET last_leased_at = clock_timestamp()
                 FROM (SELECT pk.decider, pk.decider_id FROM picked pk
                       EXCEPT
                       SELECT evs.decider, evs.decider_id FROM evs) x
                 WHERE p.view = v_view
                   AND p.decider = x.decider
                   AND p.decider_id = x.decider_id)
        SELECT l.lease_id, evs.event, evs.event_id, evs.event_version, evs.decider, evs.decider_id, evs.data,
               evs.command_id, evs.previous_id, evs.final, evs.created_at, evs."offset", evs.metadata, evs.tags,
               evs.attempts
        FROM evs
                 JOIN leased l ON l.decider = evs.decider AND l.decider_id = evs.decider_id
        ORDER BY evs."offset";
END;
$$;

-- API: as in 0002; a delivery also ends the partition's current failure.
CREATE OR REPLACE FUNCTION ack_event(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_offset BIGINT, v_lease_id UUID)
    RETURNS SETOF view_partitions
    LANGUAGE plpgsql AS
$$
BEGIN
    RETURN QUERY UPDATE view_partitions p
        SET acked_offset = v_offset,
            head_offset = GREATEST(p.head_offset, v_offset),
            acked_lease_id = v_lease_id,
            lease_id = NULL,
            leased_until = NULL,
            leased_to = NULL,
            retry_at = NULL,
            attempts = 0,
            failing_since = NULL,
            last_error = NULL,
            last_status = NULL,
            last_error_at = NULL
        WHERE p.view = v_view
          AND p.decider = v_decider
          AND p.decider_id = v_decider_id
          AND p.lease_id = v_lease_id
          AND v_offset > p.acked_offset
          AND v_offset <= p.leased_to
          AND EXISTS(SELECT 1
                     FROM events e
                     WHERE e."offset" = v_offset
                       AND e.decider = v_decider
                       AND e.decider_id = v_decider_id)
        RETURNING *;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT *
                 FROM view_partitions p
                 WHERE p.view = v_view
                   AND p.decider = v_decider
                   AND p.decider_id = v_decider_id
                   AND p.acked_lease_id = v_lease_id
                   AND p.acked_offset = v_offset;
    IF NOT FOUND THEN
        PERFORM fstore_refuse_settle(v_view, v_decider, v_decider_id, v_lease_id);
    END IF;
END;
$$;

-- API: as in 0002; with v_error, the consumer says why it gave the lease
-- back: the partition's last_error and an attempt record it, as for a
-- failed push.
-- Example: SELECT * FROM schedule_nack_event('view1', 'order', 'order-1', '…lease_id…', 5000, 'db timeout');
DROP FUNCTION nack_event(TEXT, TEXT, TEXT, UUID);
DROP FUNCTION schedule_nack_event(TEXT, TEXT, TEXT, UUID, BIGINT);
CREATE FUNCTION schedule_nack_event(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_lease_id UUID,
                                    v_milliseconds BIGINT, v_error TEXT DEFAULT NULL)
    RETURNS SETOF view_partitions
    LANGUAGE plpgsql AS
$$
DECLARE
    cur view_partitions;
    nxt events;
BEGIN
    UPDATE view_partitions p
    SET lease_id      = NULL,
        leased_until  = NULL,
        leased_to     = NULL,
        attempts      = p.attempts + 1,
        retry_at      = CASE WHEN v_milliseconds > 0 THEN now() + make_interval(secs => v_milliseconds / 1000.0) END,
        last_error    = COALESCE(v_error, p.last_error),
        last_error_at = CASE WHEN v_error IS NOT NULL THEN now() ELSE p.last_error_at END,
        last_status   = CASE WHEN v_error IS NOT NULL THEN NULL ELSE p.last_status END,
        failing_since = CASE WHEN v_error IS NOT NULL THEN COALESCE(p.failing_since, now()) ELSE p.failing_since END,
        attempt_seq   = p.attempt_seq + (v_error IS NOT NULL)::INT
    WHERE p.view = v_view
      AND p.decider = v_decider
      AND p.decider_id = v_decider_id
      AND p.lease_id = v_lease_id
    RETURNING * INTO cur;
    IF NOT FOUND THEN
        PERFORM fstore_refuse_settle(v_view, v_decider, v_decider_id, v_lease_id);
    END IF;
    IF v_error IS NOT NULL THEN
        SELECT * INTO nxt FROM fstore_next_event(v_view, v_decider, v_decider_id, cur.acked_offset);
        PERFORM fstore_add_attempts(v_view, v_decider, v_decider_id, cur.attempt_seq,
                                    jsonb_build_array(jsonb_build_object('at', now(), 'kind', 'nack', 'event_id', nxt.event_id,
                                                                         'offset', nxt."offset", 'error', v_error)));
    END IF;
    RETURN NEXT cur;
END;
$$;

CREATE FUNCTION nack_event(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_lease_id UUID)
    RETURNS SETOF view_partitions
    LANGUAGE sql AS
$$
SELECT * FROM schedule_nack_event(v_view, v_decider, v_decider_id, v_lease_id, 0);
$$;

-- Dispatcher: settle a lease of pushes in one round trip, with its attempts
-- (v_attempts, a JSON array as fstore_add_attempts takes).
--   * v_error NULL, v_acked_offset > 0: delivered up to v_acked_offset (an
--     offset handed out in the lease), as ack_event.
--   * v_error NULL, v_acked_offset 0: nothing delivered; the lease is given
--     back without counting a failure (a shutdown).
--   * v_error set: a failed push, as fstore_record_failure (0002): the
--     events before it are acked, the failure counted and described, the
--     lease released until v_retry_at, the partition parked once it failed
--     v_max_attempts times or for v_max_age.
-- Fenced like ack_event: FS006, FS007, FS008.
CREATE FUNCTION fstore_settle_push(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_lease_id UUID,
                                   v_acked_offset BIGINT, v_attempts JSONB,
                                   v_error TEXT DEFAULT NULL, v_status INT DEFAULT NULL,
                                   v_retry_at TIMESTAMPTZ DEFAULT NULL, v_max_attempts INT DEFAULT 20,
                                   v_max_age INTERVAL DEFAULT '72 hours')
    RETURNS SETOF view_partitions
    LANGUAGE plpgsql AS
$$
DECLARE
    cur       view_partitions;
    delivered BOOLEAN := v_error IS NULL AND v_acked_offset > 0;
    n         INT     := COALESCE(jsonb_array_length(v_attempts), 0);
BEGIN
    UPDATE view_partitions p
    SET acked_offset   = GREATEST(p.acked_offset, v_acked_offset),
        head_offset    = GREATEST(p.head_offset, v_acked_offset),
        acked_lease_id = CASE WHEN v_acked_offset > 0 THEN v_lease_id ELSE p.acked_lease_id END,
        lease_id       = NULL,
        leased_until   = NULL,
        leased_to      = NULL,
        retry_at       = CASE WHEN v_error IS NOT NULL THEN v_retry_at END,
        attempts       = CASE WHEN v_error IS NOT NULL THEN p.attempts + 1 WHEN delivered THEN 0 ELSE p.attempts END,
        failing_since  = CASE
                             WHEN v_error IS NOT NULL THEN COALESCE(p.failing_since, now())
                             WHEN delivered THEN NULL
                             ELSE p.failing_since END,
        last_error     = CASE WHEN v_error IS NOT NULL THEN v_error WHEN delivered THEN NULL ELSE p.last_error END,
        last_status    = CASE WHEN v_error IS NOT NULL THEN v_status WHEN delivered THEN NULL ELSE p.last_status END,
        last_error_at  = CASE WHEN v_error IS NOT NULL THEN now() WHEN delivered THEN NULL ELSE p.last_error_at END,
        parked         = CASE
                             WHEN v_error IS NOT NULL THEN p.attempts + 1 >= v_max_attempts OR
                                                           now() - COALESCE(p.failing_since, now()) >= v_max_age
                             ELSE p.parked END,
        attempt_seq    = p.attempt_seq + n
    WHERE p.view = v_view
      AND p.decider = v_decider
      AND p.decider_id = v_decider_id
      AND p.lease_id = v_lease_id
      AND (v_acked_offset = 0 OR (v_acked_offset > p.acked_offset AND v_acked_offset <= p.leased_to))
    RETURNING * INTO cur;
    IF NOT FOUND THEN
        PERFORM fstore_refuse_settle(v_view, v_decider, v_decider_id, v_lease_id);
    END IF;
    IF n > 0 THEN
        PERFORM fstore_add_attempts(v_view, v_decider, v_decider_id, cur.attempt_seq, v_attempts);
    END IF;
    RETURN NEXT cur;
END;
$$;

-- The partition's next matching event after its progress, or NULL.
CREATE FUNCTION fstore_next_event(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_after BIGINT)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE AS
$$
SELECT e.*
FROM events e, views w
WHERE w.view = v_view
  AND e.decider = v_decider
  AND e.decider_id = v_decider_id
  AND e."offset" > v_after
  AND (w.deciders IS NULL OR e.decider = ANY (w.deciders))
  AND (w.events IS NULL OR e.event = ANY (w.events))
ORDER BY e."offset"
LIMIT 1;
$$;

-- Locks a partition for an operator's change; FS006 when it does not
-- exist, FS011 while it is leased. An expired lease is fenced out by the
-- change (lease_id is cleared), so its holder's late ack is refused.
CREATE FUNCTION fstore_lock_idle_partition(v_view TEXT, v_decider TEXT, v_decider_id TEXT)
    RETURNS view_partitions
    LANGUAGE plpgsql AS
$$
DECLARE
    cur view_partitions;
BEGIN
    SELECT * INTO cur FROM view_partitions
    WHERE view = v_view AND decider = v_decider AND decider_id = v_decider_id
        FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FS006',
            MESSAGE = format('view "%s" has no partition for stream ("%s", "%s")', v_view, v_decider, v_decider_id);
    END IF;
    IF cur.leased_until > now() THEN
        RAISE EXCEPTION USING ERRCODE = 'FS011',
            MESSAGE = format('the partition is leased until %s: try again once the lease ends',
                             to_char(cur.leased_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
    END IF;
    RETURN cur;
END;
$$;

-- API: settle the partition's next matching event without delivering it (a
-- poison event). v_offset must be that event's offset; refused while the
-- partition is leased. Un-parks the partition, ends its failure and records
-- the skip as an attempt.
-- Example: SELECT * FROM skip_event('view1', 'order', 'order-1', 42);
CREATE FUNCTION skip_event(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_offset BIGINT)
    RETURNS SETOF view_partitions
    LANGUAGE plpgsql AS
$$
DECLARE
    cur view_partitions;
    nxt events;
BEGIN
    cur := fstore_lock_idle_partition(v_view, v_decider, v_decider_id);
    SELECT * INTO nxt FROM fstore_next_event(v_view, v_decider, v_decider_id, cur.acked_offset);
    IF nxt."offset" IS NULL OR nxt."offset" <> v_offset THEN
        RAISE EXCEPTION USING ERRCODE = 'FS012',
            MESSAGE = CASE
                          WHEN nxt."offset" IS NULL THEN
                              format('offset %s is not the partition''s next event: it has none (caught up)', v_offset)
                          ELSE format('offset %s is not the partition''s next event, which is at offset %s',
                                      v_offset, nxt."offset") END;
    END IF;
    UPDATE view_partitions p
    SET acked_offset   = v_offset,
        head_offset    = GREATEST(p.head_offset, v_offset),
        lease_id       = NULL,
        leased_until   = NULL,
        leased_to      = NULL,
        acked_lease_id = NULL,
        retry_at       = NULL,
        attempts       = 0,
        parked         = FALSE,
        failing_since  = NULL,
        last_error     = NULL,
        last_status    = NULL,
        last_error_at  = NULL,
        attempt_seq    = p.attempt_seq + 1
    WHERE p.view = v_view AND p.decider = v_decider AND p.decider_id = v_decider_id
    RETURNING * INTO cur;
    PERFORM fstore_add_attempts(v_view, v_decider, v_decider_id, cur.attempt_seq,
                                jsonb_build_array(jsonb_build_object('at', now(), 'kind', 'skip', 'event_id', nxt.event_id,
                                                                     'offset', v_offset,
                                                                     'error', 'skipped by an operator')));
    RETURN NEXT cur;
END;
$$;

-- API: move the partition's progress back so that its matching events
-- after v_after are delivered again; refused while leased, and when v_after
-- is ahead of the progress (a replay never moves progress past what was
-- handed out). An after before the view's start replays from the start.
-- Example: SELECT * FROM replay_partition('view1', 'order', 'order-1', 0);
CREATE FUNCTION replay_partition(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_after BIGINT)
    RETURNS SETOF view_partitions
    LANGUAGE plpgsql AS
$$
DECLARE
    cur  view_partitions;
    w    views;
    a    BIGINT;
    head BIGINT;
BEGIN
    cur := fstore_lock_idle_partition(v_view, v_decider, v_decider_id);
    IF v_after > cur.acked_offset THEN
        RAISE EXCEPTION USING ERRCODE = 'FS013', COLUMN = 'after',
            MESSAGE = format('after %s is ahead of the partition''s progress (offset %s)', v_after, cur.acked_offset);
    END IF;
    SELECT * INTO w FROM views WHERE view = v_view;
    a := GREATEST(v_after, w.start_offset);
    -- The newest matching event to deliver again: head_offset must name a
    -- matching event, or the partition would look behind with nothing to hand out.
    SELECT max(e."offset") INTO head
    FROM events e
    WHERE e.decider = v_decider
      AND e.decider_id = v_decider_id
      AND e."offset" > a
      AND e."offset" <= GREATEST(cur.head_offset, cur.acked_offset)
      AND (w.deciders IS NULL OR e.decider = ANY (w.deciders))
      AND (w.events IS NULL OR e.event = ANY (w.events));
    RETURN QUERY UPDATE view_partitions p
        SET acked_offset   = LEAST(p.acked_offset, a),
            head_offset    = GREATEST(COALESCE(head, a), LEAST(p.acked_offset, a)),
            lease_id       = NULL,
            leased_until   = NULL,
            leased_to      = NULL,
            acked_lease_id = NULL
        WHERE p.view = v_view AND p.decider = v_decider AND p.decider_id = v_decider_id
        RETURNING *;
END;
$$;
