package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Heartbeat is what one dispatcher process records about itself.
type Heartbeat struct {
	DispatcherID uuid.UUID
	Host         string
	PID          int
	MetricsAddr  string
	Version      string
	StartedAt    time.Time
	// How often the process beats; it is unhealthy once late by
	// HeartbeatMisses of these.
	Interval time.Duration
}

// HeartbeatMisses is how many intervals a dispatcher may miss before it is
// shown unhealthy: one late beat (a slow database, a pause) is not an outage.
const HeartbeatMisses = 3

// heartbeatRetention is how long a dead dispatcher's row stays listed.
const heartbeatRetention = "24 hours"

// RecordHeartbeat stores hb with the database's clock as its last-seen
// time, and prunes the rows of processes unseen for a day. Errors are the
// store's usual ones (ErrUnavailable, ErrInvalid for an empty host).
func (s *Store) RecordHeartbeat(ctx context.Context, hb Heartbeat) error {
	ms := hb.Interval.Milliseconds()
	if ms <= 0 {
		return fmt.Errorf("heartbeat interval %s: %w", hb.Interval, ErrInvalid)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO dispatchers (dispatcher_id, host, pid, metrics_addr, version, started_at, interval_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (dispatcher_id) DO UPDATE SET last_seen_at = now(), interval_ms = EXCLUDED.interval_ms`,
		hb.DispatcherID, hb.Host, hb.PID, hb.MetricsAddr, hb.Version, hb.StartedAt, ms)
	b.Queue(`DELETE FROM dispatchers WHERE last_seen_at < now() - interval '` + heartbeatRetention + `'`)
	return interpretError(s.pool.SendBatch(ctx, b).Close())
}

// RemoveHeartbeat deletes a dispatcher's row: a process that stops cleanly
// is not an outage. Removing an unknown id is not an error.
func (s *Store) RemoveHeartbeat(ctx context.Context, id uuid.UUID) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM dispatchers WHERE dispatcher_id = $1`, id)
	return interpretError(err)
}

// DispatcherStatus is one dispatcher process as its heartbeats show it.
type DispatcherStatus struct {
	DispatcherID uuid.UUID `json:"dispatcher_id" swaggertype:"string" format:"uuid" binding:"required"`
	Host         string    `json:"host" example:"worker-3" binding:"required"`
	PID          int       `json:"pid" example:"4211" binding:"required"`
	// Where its /metrics and /healthz listen (FSTORE_METRICS_ADDR).
	MetricsAddr string    `json:"metrics_addr" example:"127.0.0.1:9090" binding:"required"`
	Version     string    `json:"version" example:"0.1.0" binding:"required"`
	StartedAt   time.Time `json:"started_at" format:"date-time" binding:"required"`
	LastSeenAt  time.Time `json:"last_seen_at" format:"date-time" binding:"required"`
	// How often it records a heartbeat.
	IntervalMS int64 `json:"interval_ms" format:"int64" example:"5000" binding:"required"`
	// Seen within the last three intervals, by the database's clock.
	Healthy bool `json:"healthy" binding:"required"`
} //@name DispatcherStatus

// MaxListedDispatchers bounds ListDispatchers: a dispatcher restarting in a
// loop leaves a row per start for a day, and the console samples the list
// every few seconds.
const MaxListedDispatchers = 100

// ListDispatchers returns the dispatcher processes seen within the last
// day, healthy ones first, then by host and start time; at most
// MaxListedDispatchers of them.
func (s *Store) ListDispatchers(ctx context.Context) ([]DispatcherStatus, error) {
	rows, err := s.pool.Query(ctx, `SELECT dispatcher_id, host, pid, metrics_addr, version, started_at,
		last_seen_at, interval_ms, last_seen_at > now() - $1 * interval_ms * interval '1 millisecond' AS healthy
		FROM dispatchers WHERE last_seen_at >= now() - interval '`+heartbeatRetention+`'
		ORDER BY healthy DESC, host, started_at, dispatcher_id LIMIT $2`, HeartbeatMisses, MaxListedDispatchers)
	if err != nil {
		return nil, interpretError(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DispatcherStatus, error) {
		var d DispatcherStatus
		err := row.Scan(&d.DispatcherID, &d.Host, &d.PID, &d.MetricsAddr, &d.Version, &d.StartedAt,
			&d.LastSeenAt, &d.IntervalMS, &d.Healthy)
		return d, err
	})
	if err != nil {
		return nil, interpretError(err)
	}
	return out, nil
}
