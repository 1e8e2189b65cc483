package store

import (
	"context"
	"time"
)

// LogStatus is the log's size, read cheaply enough to sample every few
// seconds at any size: an exact count(*) over millions of events is not.
type LogStatus struct {
	// The highest offset of a committed event; 0 when the log is empty.
	// Sampled twice, its difference over time is the append rate (offsets
	// have gaps where an append failed, so the rate is a slight overestimate).
	LastOffset int64 `json:"last_offset" format:"int64" example:"2000000" binding:"required"`
	// About how many events the log holds, from PostgreSQL's statistics
	// (pg_stat_user_tables.n_live_tup, else pg_class.reltuples): current
	// within a second or so of the last commit, never counted.
	EventsEstimate int64 `json:"events_estimate" format:"int64" example:"1999874" binding:"required"`
	// The database's clock when it read LastOffset: samples taken through
	// different API processes share one clock, so their rate holds.
	At time.Time `json:"-"`
} //@name LogStatus

// LogStatus returns the newest committed offset and an estimate of the
// event count. Both reads cost the same at a thousand events or a billion:
// one step down the offset index and one row of the statistics views.
func (s *Store) LogStatus(ctx context.Context) (LogStatus, error) {
	var st LogStatus
	err := s.pool.QueryRow(ctx, `SELECT
		COALESCE((SELECT "offset" FROM events ORDER BY "offset" DESC LIMIT 1), 0),
		COALESCE((SELECT CASE WHEN st.n_live_tup > 0 OR c.reltuples < 0 THEN st.n_live_tup
		                      ELSE c.reltuples::bigint END
		          FROM pg_class c LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid
		          WHERE c.oid = 'events'::regclass), 0),
		clock_timestamp()`).Scan(&st.LastOffset, &st.EventsEstimate, &st.At)
	if err != nil {
		return LogStatus{}, interpretError(err)
	}
	return st, nil
}
