-- fstore 0006: reads from a hot standby.
--
-- Decisions are taken on the primary; projections may read a standby. A
-- reader paging the log (or a decider, or a query) must never skip an event
-- whose transaction commits late, and the read horizon that guarantees it
-- (fstore_read_horizon) is computed from pg_locks, which on a standby does
-- not show the primary's writers. So a standby reads below a horizon
-- sampled on the primary, once it has replayed far enough:
--
--   1. On the primary, fstore_horizon_sample() returns the read horizon h
--      and then the WAL insert position l. Every event below h had committed
--      when h was read (its writer's lock was gone), and a writer releases
--      its locks only after inserting its commit record: so every such
--      commit record lies before l.
--   2. On a standby, fstore_use_horizon(samples) picks the highest sampled h
--      whose l the standby has replayed (pg_last_wal_replay_lsn() >= l):
--      those commits are visible to every snapshot it takes from then on.
--      It sets h as the transaction's read horizon, which fstore_read_horizon
--      returns on a standby, and read_events, query_position and
--      query_events honour. Read in a later statement of the same
--      transaction: its snapshot is taken after the replay reached l.
--   3. A standby that has replayed none of the samples raises FS016, and the
--      reader reads the primary instead.
--
-- SQLSTATEs raised here:
--   FS015 no read horizon: the server is a standby and this transaction has
--         not chosen a sampled horizon (fstore_use_horizon)
--   FS016 standby behind: the standby has not replayed any sampled horizon
--
-- Example, for SQL users:
--   on the primary:  SELECT horizon, lsn FROM fstore_horizon_sample();   -- 1042, 0/3000148
--   on the standby:  BEGIN;
--                    SELECT fstore_use_horizon(ARRAY[1042], ARRAY['0/3000148']::pg_lsn[]);
--                    SELECT * FROM read_events(0, 1000);
--                    COMMIT;

-- The read horizon: on a primary as before (0003); on a standby the one the
-- transaction chose with fstore_use_horizon, or FS015.
CREATE OR REPLACE FUNCTION fstore_read_horizon() RETURNS BIGINT
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    v BIGINT;
    k BIGINT;
BEGIN
    IF pg_is_in_recovery() THEN
        v := NULLIF(current_setting('fstore.read_horizon', true), '')::BIGINT;
        IF v IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'FS015',
                MESSAGE = 'this server is a standby: its locks do not show the primary''s writers',
                HINT = 'choose a horizon sampled on the primary first, in the same transaction: '
                    || 'SELECT fstore_use_horizon(horizons, lsns) with the results of fstore_horizon_sample()';
        END IF;
        RETURN v;
    END IF;
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

-- API, on the primary: the read horizon, then a WAL position past the
-- commit of every event below it (step 1 above).
CREATE FUNCTION fstore_horizon_sample(OUT horizon BIGINT, OUT lsn PG_LSN)
    LANGUAGE plpgsql
    VOLATILE AS
$$
BEGIN
    horizon := fstore_read_horizon();
    lsn := pg_current_wal_insert_lsn();
END;
$$;

-- API, on a standby: choose for this transaction the highest horizon of
-- v_horizons whose position in v_lsns the standby has replayed, and return
-- it (step 2); FS016 when it has replayed none. On a primary (a standby
-- since promoted) it returns the primary's own horizon.
CREATE FUNCTION fstore_use_horizon(v_horizons BIGINT[], v_lsns PG_LSN[]) RETURNS BIGINT
    LANGUAGE plpgsql
    VOLATILE AS
$$
DECLARE
    h        BIGINT;
    replayed PG_LSN := pg_last_wal_replay_lsn();
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RETURN fstore_read_horizon();
    END IF;
    SELECT max(s.h) INTO h FROM unnest(v_horizons, v_lsns) AS s(h, lsn) WHERE s.lsn <= replayed;
    IF h IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'FS016',
            MESSAGE = format('this standby has replayed the primary''s WAL up to %s, before every sampled horizon',
                             replayed);
    END IF;
    PERFORM set_config('fstore.read_horizon', h::TEXT, true);
    RETURN h;
END;
$$;
