package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// PushView is a view the dispatcher serves: one with an edge_function_url
// whose delivery is not disabled.
type PushView struct {
	View string
	URL  string
	// Secrets sign every push: the current one first, then during a
	// rotation the previous one, for 24 hours.
	Secrets []string
	// How often to look for work when no new event is heard of (0: the
	// dispatcher's default): the view's polling_delay_s.
	PollingDelay time.Duration
	// The view's lease length for polling consumers.
	LockTimeout time.Duration
}

// PushViews lists the views the dispatcher serves.
func (s *Store) PushViews(ctx context.Context) ([]PushView, error) {
	rows, err := s.pool.Query(ctx, `SELECT view, edge_function_url, secret,
		       CASE WHEN previous_until > now() THEN previous_secret END,
		       COALESCE(pooling_delay_s, 0), lock_timeout_s
		FROM views WHERE edge_function_url IS NOT NULL AND secret IS NOT NULL AND dispatch_disabled_at IS NULL
		ORDER BY view`)
	if err != nil {
		return nil, interpretError(err)
	}
	views, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PushView, error) {
		var v PushView
		var secret string
		var previous *string
		var polling, lock int64
		err := r.Scan(&v.View, &v.URL, &secret, &previous, &polling, &lock)
		v.Secrets = []string{secret}
		if previous != nil {
			v.Secrets = append(v.Secrets, *previous)
		}
		v.PollingDelay, v.LockTimeout = time.Duration(polling)*time.Second, time.Duration(lock)*time.Second
		return v, err
	})
	if err != nil {
		return nil, interpretError(err)
	}
	return views, nil
}

// Failure is a failed push.
type Failure struct {
	// The last offset pushed successfully under the lease before the
	// failure, acked with it; 0 when the first push failed.
	AckedOffset int64
	// What went wrong, for operators: "HTTP 500", "timeout", "connection refused"…
	Error string
	// The receiver's HTTP status; 0 when there was no answer.
	Status int
	// Not leased again before this time.
	RetryAt time.Time
	// Park the partition once it has failed this many times…
	MaxAttempts int
	// …or has been failing for this long.
	MaxAge time.Duration
}

// RecordFailure counts a failed push under lease leaseID: the lease is
// released until f.RetryAt, and the partition parked when it has failed too
// often or too long. Errors: ErrNotFound, ErrLeaseLost.
func (s *Store) RecordFailure(ctx context.Context, view, decider, deciderID string, leaseID uuid.UUID, f Failure) (Partition, error) {
	var status *int
	if f.Status != 0 {
		status = &f.Status
	}
	p, err := s.settle(ctx, `SELECT `+partitionColumns+` FROM fstore_record_failure($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		view, decider, deciderID, pgUUID(&leaseID), f.AckedOffset, f.Error, status, f.RetryAt, f.MaxAttempts, f.MaxAge)
	if err != nil {
		return p, s.partitionError(ctx, err, partitionRef{view, decider, deciderID}, leaseID, f.AckedOffset)
	}
	return p, nil
}

// DisableDispatch stops push delivery of a view (its receiver answered 410
// Gone) until the view is registered again.
func (s *Store) DisableDispatch(ctx context.Context, view, reason string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE views SET dispatch_disabled_at = now(), dispatch_disabled_reason = $2
		WHERE view = $1`, view, reason)
	if err != nil {
		return interpretError(err)
	}
	if tag.RowsAffected() == 0 {
		return viewNotFound(ErrNotFound, view)
	}
	return nil
}
