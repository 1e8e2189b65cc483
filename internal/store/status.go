package store

import (
	"context"
	"strings"
	"time"
)

// viewStatusSQL reads the status of one view ($1) or of every view (NULL),
// in one statement, at the cost of its answer rather than of the view's
// partitions (0009): the count of partitions is kept on the view's row;
// behind, pending and leased read the partitions behind (behindIdle,
// behindParked) and the few leased ones that are not (staleLease); parked,
// failing and the last error the partitions in trouble. Counting pending
// events costs O(pending events), from the stream index alone for a view
// that lists no types.
var viewStatusSQL = `
SELECT w.view, w.partitions, b.behind, b.pending, b.leased + s.leased, t.parked, t.failing,
       le.decider, le.decider_id, le.last_error, le.last_error_at
FROM views w
         CROSS JOIN LATERAL (
    SELECT count(*) AS behind, COALESCE(sum(` + pendingSQL + `), 0) AS pending,
           count(*) FILTER (WHERE p.leased_until > now()) AS leased
    FROM (` + partitionsWhere("p.decider, p.decider_id, p.acked_offset, p.leased_until", "w.view", "",
	behindIdle, behindParked) + `) p) b
         CROSS JOIN LATERAL (
    SELECT count(*) AS leased
    FROM view_partitions p
    WHERE p.view = w.view
      AND ` + staleLease + `
      AND p.leased_until > now()) s
         CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE p.parked) AS parked,
           count(*) FILTER (WHERE p.attempts > 0 OR p.parked) AS failing
    FROM view_partitions p
    WHERE p.view = w.view
      AND (p.attempts > 0 OR p.parked OR p.last_error IS NOT NULL)) t
         LEFT JOIN LATERAL (
    SELECT p.decider, p.decider_id, p.last_error, p.last_error_at
    FROM view_partitions p
    WHERE p.view = w.view
      AND (p.attempts > 0 OR p.parked OR p.last_error IS NOT NULL)
      AND p.last_error IS NOT NULL
    ORDER BY p.last_error_at DESC
    LIMIT 1) le ON TRUE
WHERE $1::text IS NULL OR w.view = $1`

// The partitions behind, in two parts that each have a small index, and
// those holding a lease that are not behind: a lease that outlived a change
// of the view's lists. The three never overlap, and a partition holding a
// lease is in one of them. "Behind" is a difference, as the indexes state
// it, so that the planner estimates it from its statistics (0009).
const (
	behindIdle   = `p.head_offset - p.acked_offset > 0 AND NOT p.parked`                // view_partitions_work_idx
	behindParked = `p.parked AND p.head_offset - p.acked_offset > 0`                    // view_partitions_trouble_idx (0005)
	staleLease   = `p.leased_until IS NOT NULL AND p.head_offset - p.acked_offset <= 0` // view_partitions_stale_lease_idx
)

// partitionsWhere selects cols of the partitions (p) of view that pass
// cond ("" for none) and one of preds, as a UNION ALL of one branch per
// predicate, so that each branch reads its own partial index.
func partitionsWhere(cols, view, cond string, preds ...string) string {
	branches := make([]string, len(preds))
	for i, pred := range preds {
		branches[i] = `SELECT ` + cols + ` FROM view_partitions p WHERE p.view = ` + view + ` AND ` + pred + cond
	}
	return strings.Join(branches, "\n\tUNION ALL\n\t")
}

// pendingSQL counts a behind partition's (p) matching events after its
// progress, for view w. Without a list of types, the stream index alone
// answers (events are never updated, so their pages are all-visible once
// vacuumed); with one, each pending event's type is read.
const pendingSQL = `CASE WHEN w.events IS NULL THEN
	(SELECT count(*) FROM events e
	 WHERE e.decider = p.decider AND e.decider_id = p.decider_id AND e."offset" > p.acked_offset)
	ELSE (SELECT count(*) FROM events e
	 WHERE e.decider = p.decider AND e.decider_id = p.decider_id AND e."offset" > p.acked_offset
	   AND e.event = ANY (w.events)) END`

// viewStatuses brings the partitions of one view (name) or every view
// (nil) up to date with the log, in one statement on the primary, then
// counts them in another: on the standby when there is one (a little
// behind) unless onStandby is false (the caller just changed the view). A
// view that does not exist has no entry.
func (s *Store) viewStatuses(ctx context.Context, name *string, onStandby bool) (map[string]ViewStatus, error) {
	if _, err := s.pool.Exec(ctx, `SELECT count(fstore_discover(view)) FROM views WHERE $1::text IS NULL OR view = $1`,
		name); err != nil {
		return nil, interpretError(err)
	}
	var out map[string]ViewStatus
	count := func(q dbtx) error {
		var err error
		out, err = countStatuses(ctx, q, name)
		return err
	}
	var err error
	if onStandby {
		err = s.onReader(ctx, count)
	} else {
		err = count(s.pool)
	}
	return out, err
}

func countStatuses(ctx context.Context, q dbtx, name *string) (map[string]ViewStatus, error) {
	rows, err := q.Query(ctx, viewStatusSQL, name)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	out := map[string]ViewStatus{}
	for rows.Next() {
		var view string
		var st ViewStatus
		var decider, deciderID, lastError *string
		var at *time.Time
		if err := rows.Scan(&view, &st.Partitions, &st.PartitionsBehind, &st.EventsPending, &st.PartitionsLeased,
			&st.PartitionsParked, &st.PartitionsFailing, &decider, &deciderID, &lastError, &at); err != nil {
			return nil, interpretError(err)
		}
		if lastError != nil {
			st.LastError = &PartitionError{Decider: *decider, DeciderID: *deciderID, Error: *lastError, At: *at}
		}
		out[view] = st
	}
	if err := rows.Err(); err != nil {
		return nil, interpretError(err)
	}
	return out, nil
}
