-- fstore 0009: a view's status costs what its answer needs, not the number
-- of its partitions.
--
-- The status (GET /v1/views, GET /v1/views/{view}, the metrics) counted
-- every partition row of every view on each call. At 200,000 partitions
-- that read the whole table (80 ms), and the planner, which put a third of
-- the partitions behind (see the work index below), had the JIT compile the
-- query first (0.6 s): the console's overview sampled that every 5 s. Now:
--
--   * partitions (streams in the view's scope) is a count kept on the view's
--     row by the only statements that change it: discovery adds the streams
--     it finds new or back in scope, registration resets it when it forgets
--     what was discovered (a new start_at, new lists). Both hold the view's
--     discovery lock, so the count never races itself;
--   * partitions_behind, events_pending and partitions_leased read the
--     partitions behind, through the work index (behind, not parked: 0002)
--     and the trouble index (parked: 0005), and the few leased ones that are
--     not behind through the index below;
--   * parked, failing and the last error read the trouble index, as before.
--
-- So a status costs the partitions behind or in trouble (and the events
-- pending), whatever the number caught up. The partitions lists page the
-- same way: all through the primary key from the cursor, failing and parked
-- through the trouble index, behind and leased from these indexes.
--
-- No index is added to what leases and acks write: the partitions behind
-- are already in the work index, which every lease rewrites. (Partial
-- indexes of the partitions behind and of those leased, in key order, would
-- page them without a sort, but cost a lease and its ack 37% more WAL.)

ALTER TABLE views
    -- Partitions in the view's scope (view_partitions.matched): kept by
    -- fstore_discover and register_view.
    ADD COLUMN partitions BIGINT NOT NULL DEFAULT 0;

UPDATE views w
SET partitions = (SELECT count(*) FROM view_partitions p WHERE p.view = w.view AND p.matched);

-- The planner must know how few partitions are behind, or it reads every
-- partition of the view rather than the work index: it estimates a
-- comparison of two columns (head_offset > acked_offset) at a third of the
-- rows, whatever their values, and costs the index by that share. So the
-- work index states "behind" as a difference, the statistics below give it
-- the difference's real distribution, and stream_events (below) states it
-- the same way, so that its pick still reads the index. Same rows, same
-- order: only the estimate changes.
CREATE STATISTICS view_partitions_lag_stats ON (head_offset - acked_offset) FROM view_partitions;
DROP INDEX view_partitions_work_idx;
CREATE INDEX view_partitions_work_idx ON view_partitions (view, last_leased_at NULLS FIRST)
    WHERE head_offset - acked_offset > 0 AND NOT parked;

-- Partitions holding a lease that are not behind: none in normal running
-- (a lease hands out work, and whatever settles the lease clears it), only
-- those whose lease outlived a change of the view's lists. Leases and acks
-- never write to it: it costs them nothing.
CREATE INDEX view_partitions_stale_lease_idx ON view_partitions (view, decider, decider_id)
    WHERE leased_until IS NOT NULL AND head_offset - acked_offset <= 0;

ANALYZE view_partitions;

-- API: lease work, as in 0005; the pick states "behind" as the work index
-- now does (see above).
CREATE OR REPLACE FUNCTION stream_events(v_view TEXT, v_limit INT DEFAULT 1, v_lock_timeout_s BIGINT DEFAULT NULL,
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
            AND p.head_offset - p.acked_offset > 0
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

-- As in 0005, and counts the partitions it adds to the view's scope: the
-- streams it finds that had no partition, or one out of scope. Both are
-- read from the statement's snapshot, before its upsert: the discovery lock
-- keeps every other writer of partitions and of matched out meanwhile.
CREATE OR REPLACE FUNCTION fstore_discover(v_view TEXT) RETURNS VOID
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    h        BIGINT;
    w        views;
    per      INT;
    upto     BIGINT;
    added    BIGINT;
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
        WITH found AS MATERIALIZED (
            SELECT e.decider, e.decider_id, max(e."offset") AS head
            FROM events e
            WHERE e."offset" > w.scanned_offset
              AND e."offset" < h
            GROUP BY e.decider, e.decider_id),
             ins AS (
                 INSERT INTO view_partitions AS p (view, decider, decider_id, acked_offset, head_offset)
                     SELECT v_view, f.decider, f.decider_id, w.start_offset, f.head
                     FROM found f
                     ON CONFLICT ON CONSTRAINT view_partitions_pkey
                         DO UPDATE SET head_offset = GREATEST(p.head_offset, EXCLUDED.head_offset), matched = TRUE)
        SELECT count(*)
        INTO added
        FROM found f
        WHERE NOT EXISTS(SELECT 1
                         FROM view_partitions p
                         WHERE p.view = v_view
                           AND p.decider = f.decider
                           AND p.decider_id = f.decider_id
                           AND p.matched);
        UPDATE views SET scanned_offset = h - 1, partitions = partitions + added WHERE view = v_view;
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
             found AS MATERIALIZED (
                 SELECT cand.decider, cand.decider_id, max(cand."offset") AS head
                 FROM cand, bound
                 WHERE cand."offset" <= bound.b
                   AND ($5::text[] IS NULL OR cand.event = ANY ($5::text[]))
                 GROUP BY cand.decider, cand.decider_id),
             ins AS (
                 INSERT INTO view_partitions AS p (view, decider, decider_id, acked_offset, head_offset)
                     SELECT $4, f.decider, f.decider_id, $6, f.head
                     FROM found f
                     ON CONFLICT ON CONSTRAINT view_partitions_pkey
                         DO UPDATE SET head_offset = GREATEST(p.head_offset, EXCLUDED.head_offset), matched = TRUE)
        SELECT bound.b,
               (SELECT count(*)
                FROM found f
                WHERE NOT EXISTS(SELECT 1
                                 FROM view_partitions p
                                 WHERE p.view = $4
                                   AND p.decider = f.decider
                                   AND p.decider_id = f.decider_id
                                   AND p.matched))
        FROM bound$q$, branches)
        INTO upto, added
        USING w.scanned_offset, h, per, v_view, CASE WHEN w.deciders IS NOT NULL THEN w.events END, w.start_offset;
    UPDATE views SET scanned_offset = upto, partitions = partitions + added WHERE view = v_view;
END;
$$;

-- As in 0005; forgetting what was discovered (a new start_at deletes the
-- partitions, new lists put every one out of scope) also resets the count
-- of partitions, which discovery then raises again.
CREATE OR REPLACE FUNCTION register_view(v_view TEXT,
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
        cur.partitions := 0;
    ELSIF v_deciders IS DISTINCT FROM cur.deciders OR v_events IS DISTINCT FROM cur.events THEN
        -- Keep progress; forget what was discovered with the old lists and
        -- discover again from the start with the new ones.
        UPDATE view_partitions
        SET head_offset = acked_offset,
            matched     = FALSE
        WHERE view = v_view;
        cur.scanned_offset := cur.start_offset;
        cur.partitions := 0;
    END IF;
    RETURN QUERY UPDATE views
        SET start_at          = cur.start_at,
            start_offset      = cur.start_offset,
            scanned_offset    = cur.scanned_offset,
            partitions        = cur.partitions,
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
