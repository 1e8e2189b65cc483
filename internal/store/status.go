package store

import (
	"context"
	"time"
)

// viewStatusSQL counts the partitions of one view ($1) or of every view
// (NULL), in one statement. Counting pending events costs O(pending
// events); the last error comes from the small index of partitions in trouble.
const viewStatusSQL = `
SELECT w.view, c.partitions, c.behind, c.pending, c.leased, c.parked, c.failing,
       le.decider, le.decider_id, le.last_error, le.last_error_at
FROM views w
         CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE p.matched) AS partitions,
           count(*) FILTER (WHERE p.head_offset > p.acked_offset) AS behind,
           COALESCE(sum((SELECT count(*)
                          FROM events e
                          WHERE e.decider = p.decider
                            AND e.decider_id = p.decider_id
                            AND e."offset" > p.acked_offset
                            AND (w.events IS NULL OR e.event = ANY (w.events))))
                    FILTER (WHERE p.head_offset > p.acked_offset), 0) AS pending,
           count(*) FILTER (WHERE p.leased_until > now()) AS leased,
           count(*) FILTER (WHERE p.parked) AS parked,
           count(*) FILTER (WHERE p.attempts > 0 OR p.parked) AS failing
    FROM view_partitions p
    WHERE p.view = w.view) c
         LEFT JOIN LATERAL (
    SELECT p.decider, p.decider_id, p.last_error, p.last_error_at
    FROM view_partitions p
    WHERE p.view = w.view
      AND (p.attempts > 0 OR p.parked OR p.last_error IS NOT NULL)
      AND p.last_error IS NOT NULL
    ORDER BY p.last_error_at DESC
    LIMIT 1) le ON TRUE
WHERE $1::text IS NULL OR w.view = $1`

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
