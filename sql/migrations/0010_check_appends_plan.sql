-- fstore 0010: the append check's plan no longer depends on when it was made.
--
-- fstore_check_appends (0007) joins a statement's new rows to events by
-- previous_id. PL/pgSQL plans that join once per connection and keeps the
-- plan until the table's statistics change. A connection whose first insert
-- was a batch into an empty or small table got a hash join over a sequential
-- scan of events, cheap then; it kept it while the table grew, until the
-- next autoanalyze: measured, a single append took 21 ms instead of 0.4 ms at
-- 100,000 events, and a load from an empty store ran at a third of its rate.
-- The join is now always a nested loop over the unique index of event_id
-- (and of deciders' key): one index probe per new row, whatever the
-- statistics said when the plan was made.
ALTER FUNCTION fstore_check_appends()
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off;
