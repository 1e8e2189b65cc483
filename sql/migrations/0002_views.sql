-- fstore 0002: event streaming (views).
--
-- A view is a consumer group over the log; every stream (decider, decider_id)
-- is a partition, leased by one consumer at a time. The successor of
-- fstore-sql's views/locks, with its defects fixed (see docs/fstore-sql.md):
--   * appends never write per-view rows: a view discovers its partitions
--     lazily, scanning only the events appended since its last scan, below
--     the read horizon (so a late-committing first event is never missed);
--   * a poll costs O(partitions with work): a partial index holds only
--     partitions that are behind and not parked;
--   * leases are fenced: every lease has a lease_id that ack and nack must
--     present; progress never moves backwards or past what was handed out;
--   * lock_timeout_s is the lease length; partitions are keyed by
--     (decider, decider_id); re-registering keeps progress unless start_at
--     changes.
--
-- SQLSTATEs raised here:
--   FS006 not found: the view, or the partition in the view, does not exist
--   FS007 lease lost: lease_id is not the partition's current lease
--   FS008 not handed out: the offset was not handed out in this lease
--
-- Push delivery (the dispatcher) uses the same leases; failures are counted
-- per partition, which is parked after too many attempts or too long.

CREATE TABLE views
(
    view              TEXT        NOT NULL CHECK (char_length(view) BETWEEN 1 AND 255),
    start_at          TIMESTAMPTZ NOT NULL,
    -- Events at or below this offset are before the view's start.
    start_offset      BIGINT      NOT NULL,
    -- Every event at or below this offset has been scanned into view_partitions.
    scanned_offset    BIGINT      NOT NULL,
    lock_timeout_s    BIGINT      NOT NULL DEFAULT 300 CHECK (lock_timeout_s BETWEEN 1 AND 86400),
    pooling_delay_s   BIGINT CHECK (pooling_delay_s >= 0),
    edge_function_url TEXT,
    -- Standard Webhooks signing secret (whsec_ + base64) for edge_function_url.
    secret            TEXT,
    -- After a rotation the previous secret also signs, until this time.
    previous_secret   TEXT,
    previous_until    TIMESTAMPTZ,
    -- Set when the receiver answered 410 Gone: no push until re-registered.
    dispatch_disabled_at     TIMESTAMPTZ,
    dispatch_disabled_reason TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT views_pkey PRIMARY KEY (view)
);

CREATE TABLE view_partitions
(
    view           TEXT        NOT NULL REFERENCES views (view) ON DELETE CASCADE,
    decider        TEXT        NOT NULL,
    decider_id     TEXT        NOT NULL,
    -- Processed up to and including this offset.
    acked_offset   BIGINT      NOT NULL,
    -- The stream's newest offset the view has scanned.
    head_offset    BIGINT      NOT NULL,
    -- The current lease: its fencing token, its end, and the last offset it handed out.
    lease_id       UUID,
    leased_until   TIMESTAMPTZ,
    leased_to      BIGINT,
    -- The lease that made the last ack, so that a retried ack is recognised.
    acked_lease_id UUID,
    last_leased_at TIMESTAMPTZ,
    -- A nack with a delay: not leased again before this time.
    retry_at       TIMESTAMPTZ,
    attempts       INT         NOT NULL DEFAULT 0,
    parked         BOOLEAN     NOT NULL DEFAULT FALSE,
    last_error     TEXT,
    last_error_at  TIMESTAMPTZ,
    -- The HTTP status of the last failed push (NULL: no answer), and since
    -- when the partition has been failing.
    last_status    INT,
    failing_since  TIMESTAMPTZ,
    CONSTRAINT view_partitions_pkey PRIMARY KEY (view, decider, decider_id)
);

-- Only partitions with work: an empty poll over 100,000 caught-up partitions
-- reads nothing. Round-robin by the last lease, so a long backlog cannot
-- starve other partitions.
CREATE INDEX view_partitions_work_idx ON view_partitions (view, last_leased_at NULLS FIRST)
    WHERE head_offset > acked_offset AND NOT parked;

-- The offset before the first event created at or after t: where a view
-- starting at t begins. Scans the log from its start, so a start far in the
-- past costs more; a start at now() costs nothing.
CREATE FUNCTION fstore_offset_at(t TIMESTAMPTZ) RETURNS BIGINT
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    h BIGINT := fstore_read_horizon();
    o BIGINT;
BEGIN
    IF t >= now() THEN
        RETURN h - 1;
    END IF;
    SELECT e."offset" - 1 INTO o FROM events e WHERE e.created_at >= t AND e."offset" < h ORDER BY e."offset" LIMIT 1;
    RETURN COALESCE(o, h - 1);
END;
$$;

-- Brings a view's partitions up to date with the log: scans the events
-- appended since the last scan (below the read horizon, so none committing
-- late is passed over) and records each stream's newest offset. Cost is
-- proportional to the new events, and bounded: one call scans at most
-- 50,000 offsets, so a view replaying a long log catches up over several
-- polls while delivering what it found. Concurrent callers do not wait: one scans.
CREATE FUNCTION fstore_discover(v_view TEXT) RETURNS VOID
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    h       BIGINT;
    scanned BIGINT;
    start   BIGINT;
BEGIN
    IF NOT pg_try_advisory_xact_lock(1718843254, hashtext(v_view)) THEN
        RETURN;
    END IF;
    h := fstore_read_horizon();
    SELECT w.scanned_offset, w.start_offset INTO scanned, start FROM views w WHERE w.view = v_view;
    IF NOT FOUND OR scanned >= h - 1 THEN
        RETURN;
    END IF;
    h := LEAST(h, scanned + 50001);
    INSERT INTO view_partitions AS p (view, decider, decider_id, acked_offset, head_offset)
    SELECT v_view, e.decider, e.decider_id, start, max(e."offset")
    FROM events e
    WHERE e."offset" > scanned
      AND e."offset" < h
    GROUP BY e.decider, e.decider_id
    ON CONFLICT ON CONSTRAINT view_partitions_pkey
        DO UPDATE SET head_offset = GREATEST(p.head_offset, EXCLUDED.head_offset);
    UPDATE views SET scanned_offset = h - 1 WHERE view = v_view;
END;
$$;

-- A new webhook signing secret: whsec_ + base64 of 32 bytes derived from
-- gen_random_uuid(), which draws on PostgreSQL's strong random source.
CREATE FUNCTION fstore_new_secret() RETURNS TEXT
    LANGUAGE sql
    VOLATILE AS
$$
SELECT 'whsec_' || encode(sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())), 'base64');
$$;

-- API: register or update a view. A NULL start_at keeps the view's start (now()
-- for a new view). The same start_at keeps every partition's progress; another
-- start_at moves every partition to that point in time (a replay or a skip).
-- Example: SELECT * FROM register_view('view1', now() - interval '1 day', 60);
CREATE FUNCTION register_view(v_view TEXT,
                              v_start_at TIMESTAMPTZ DEFAULT NULL,
                              v_lock_timeout_s BIGINT DEFAULT 300,
                              v_pooling_delay_s BIGINT DEFAULT NULL,
                              v_edge_function_url TEXT DEFAULT NULL,
                              v_secret TEXT DEFAULT NULL)
    RETURNS SETOF views
    LANGUAGE plpgsql AS
$$
DECLARE
    cur views;
    pos BIGINT;
BEGIN
    SELECT * INTO cur FROM views WHERE view = v_view FOR UPDATE;
    IF NOT FOUND THEN
        pos := fstore_offset_at(COALESCE(v_start_at, now()));
        RETURN QUERY INSERT INTO views (view, start_at, start_offset, scanned_offset, lock_timeout_s,
                                        pooling_delay_s, edge_function_url, secret)
            VALUES (v_view, COALESCE(v_start_at, now()), pos, pos, COALESCE(v_lock_timeout_s, 300),
                    v_pooling_delay_s, v_edge_function_url,
                    COALESCE(v_secret, CASE WHEN v_edge_function_url IS NOT NULL THEN fstore_new_secret() END))
            ON CONFLICT ON CONSTRAINT views_pkey DO NOTHING
            RETURNING *;
        IF FOUND THEN
            RETURN;
        END IF;
        -- A concurrent registration won: update it below.
        SELECT * INTO cur FROM views WHERE view = v_view FOR UPDATE;
    END IF;
    IF v_start_at IS NOT NULL AND v_start_at IS DISTINCT FROM cur.start_at THEN
        pos := fstore_offset_at(v_start_at);
        DELETE FROM view_partitions WHERE view = v_view;
        cur.start_at := v_start_at;
        cur.start_offset := pos;
        cur.scanned_offset := pos;
    END IF;
    RETURN QUERY UPDATE views
        SET start_at          = cur.start_at,
            start_offset      = cur.start_offset,
            scanned_offset    = cur.scanned_offset,
            lock_timeout_s    = COALESCE(v_lock_timeout_s, 300),
            pooling_delay_s   = v_pooling_delay_s,
            edge_function_url = v_edge_function_url,
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

-- API: lease work. Up to v_limit partitions with work, each with up to
-- v_max_per_partition consecutive events, in offset order, each row carrying
-- its partition's lease_id. The lease lasts v_lock_timeout_s (default: the
-- view's lock_timeout_s).
-- Example: SELECT * FROM stream_events('view1', 10);
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
                "offset"      BIGINT
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
               evs.command_id, evs.previous_id, evs.final, evs.created_at, evs."offset"
        FROM evs
                 JOIN leased l ON l.decider = evs.decider AND l.decider_id = evs.decider_id
        ORDER BY evs."offset";
END;
$$;

-- Raises the right error for a refused ack or nack of (view, decider, decider_id).
CREATE FUNCTION fstore_refuse_settle(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_lease_id UUID)
    RETURNS VOID
    LANGUAGE plpgsql AS
$$
DECLARE
    cur view_partitions;
BEGIN
    SELECT * INTO cur FROM view_partitions WHERE view = v_view AND decider = v_decider AND decider_id = v_decider_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'FS006',
            MESSAGE = format('view %L has no partition (%L, %L)', v_view, v_decider, v_decider_id);
    END IF;
    IF cur.lease_id IS DISTINCT FROM v_lease_id THEN
        RAISE EXCEPTION USING ERRCODE = 'FS007',
            MESSAGE = format('lease %s of partition (%L, %L) is lost: lease again', v_lease_id, v_decider, v_decider_id);
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'FS008',
        MESSAGE = format('the offset was not handed out in lease %s (it holds offsets %s to %s)',
                         v_lease_id, cur.acked_offset + 1, cur.leased_to);
END;
$$;

-- API: the partition is processed up to and including v_offset, an offset
-- handed out in lease v_lease_id; releases the lease. Repeating the last ack
-- of a lease returns the partition unchanged.
-- Example: SELECT * FROM ack_event('view1', 'order', 'order-1', 42, '…lease_id…');
CREATE FUNCTION ack_event(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_offset BIGINT, v_lease_id UUID)
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
            failing_since = NULL
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

-- API: not processed; release the lease now, or let the partition be leased
-- again only after v_milliseconds.
-- Example: SELECT * FROM schedule_nack_event('view1', 'order', 'order-1', '…lease_id…', 5000);
CREATE FUNCTION schedule_nack_event(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_lease_id UUID,
                                    v_milliseconds BIGINT)
    RETURNS SETOF view_partitions
    LANGUAGE plpgsql AS
$$
BEGIN
    RETURN QUERY UPDATE view_partitions p
        SET lease_id = NULL,
            leased_until = NULL,
            leased_to = NULL,
            attempts = p.attempts + 1,
            retry_at = CASE WHEN v_milliseconds > 0 THEN now() + make_interval(secs => v_milliseconds / 1000.0) END
        WHERE p.view = v_view
          AND p.decider = v_decider
          AND p.decider_id = v_decider_id
          AND p.lease_id = v_lease_id
        RETURNING *;
    IF NOT FOUND THEN
        PERFORM fstore_refuse_settle(v_view, v_decider, v_decider_id, v_lease_id);
    END IF;
END;
$$;

-- API: not processed; release the lease now.
CREATE FUNCTION nack_event(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_lease_id UUID)
    RETURNS SETOF view_partitions
    LANGUAGE sql AS
$$
SELECT * FROM schedule_nack_event(v_view, v_decider, v_decider_id, v_lease_id, 0);
$$;

-- Dispatcher: a push failed. The events before it that this lease pushed
-- are acked (v_acked_offset, 0 for none: an offset handed out in the lease),
-- the attempt is counted and why recorded, the lease released until
-- v_retry_at, and the partition parked once it has failed v_max_attempts
-- times or for longer than v_max_age. Fenced like ack_event.
CREATE FUNCTION fstore_record_failure(v_view TEXT, v_decider TEXT, v_decider_id TEXT, v_lease_id UUID,
                                      v_acked_offset BIGINT, v_error TEXT, v_status INT, v_retry_at TIMESTAMPTZ,
                                      v_max_attempts INT, v_max_age INTERVAL)
    RETURNS SETOF view_partitions
    LANGUAGE plpgsql AS
$$
BEGIN
    RETURN QUERY UPDATE view_partitions p
        SET acked_offset = GREATEST(p.acked_offset, v_acked_offset),
            head_offset = GREATEST(p.head_offset, v_acked_offset),
            lease_id = NULL,
            leased_until = NULL,
            leased_to = NULL,
            attempts = p.attempts + 1,
            last_error = v_error,
            last_error_at = now(),
            last_status = v_status,
            failing_since = COALESCE(p.failing_since, now()),
            retry_at = v_retry_at,
            parked = p.attempts + 1 >= v_max_attempts OR now() - COALESCE(p.failing_since, now()) >= v_max_age
        WHERE p.view = v_view
          AND p.decider = v_decider
          AND p.decider_id = v_decider_id
          AND p.lease_id = v_lease_id
          AND v_acked_offset <= p.leased_to
        RETURNING *;
    IF NOT FOUND THEN
        PERFORM fstore_refuse_settle(v_view, v_decider, v_decider_id, v_lease_id);
    END IF;
END;
$$;
