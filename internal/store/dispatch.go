package store

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

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

// Failure is the failed push that ended a lease.
type Failure struct {
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

// Settlement is how a lease of pushes ended.
type Settlement struct {
	// The last offset delivered under the lease (acked with it); 0 when
	// none was.
	AckedOffset int64
	// Every push tried under the lease, in order; recorded with the
	// settlement, in the same round trip.
	Attempts []Attempt
	// The failed push that ended the lease: counted, described, and the
	// lease released until RetryAt. Nil when the lease ended otherwise:
	// everything delivered, or given back (a shutdown) without counting.
	Failure *Failure
}

// SettlePush settles a lease of pushes in one round trip: acks what was
// delivered, records the attempts (keeping the partition's last 100), and
// counts a failure, parking the partition when it failed too often or too
// long. A delivery clears the partition's last_error. Errors: ErrNotFound,
// ErrLeaseLost, ErrNotHandedOut.
func (s *Store) SettlePush(ctx context.Context, view, decider, deciderID string, leaseID uuid.UUID, st Settlement) (Partition, error) {
	js, err := json.Marshal(storedAttempts(st.Attempts))
	if err != nil {
		return Partition{}, err
	}
	var why *string
	var status *int
	var retryAt *time.Time
	maxAttempts, maxAge := 0, time.Duration(0)
	if f := st.Failure; f != nil {
		why, retryAt, maxAttempts, maxAge = &f.Error, &f.RetryAt, f.MaxAttempts, f.MaxAge
		if f.Status != 0 {
			status = &f.Status
		}
	}
	p, err := s.settle(ctx, `SELECT `+partitionColumns+`
		FROM fstore_settle_push($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		view, decider, deciderID, pgUUID(&leaseID), st.AckedOffset, js, why, status, retryAt, maxAttempts, maxAge)
	if err != nil {
		return p, s.partitionError(ctx, err, partitionRef{view, decider, deciderID}, leaseID, st.AckedOffset)
	}
	return p, nil
}

// storedAttempt is an Attempt as view_attempts keeps it: what is absent is
// left out (a push, no error, an empty body), and the event_id of an event
// named by its offset, so that a lease's ten attempts stay small (about
// 80 bytes each): recording costs pushes little.
type storedAttempt struct {
	At         time.Time  `json:"at"`
	Kind       string     `json:"kind,omitempty"` // omitted: push
	EventID    *uuid.UUID `json:"event_id,omitempty"`
	Offset     *int64     `json:"offset,omitempty"`
	DurationMs float64    `json:"duration_ms,omitempty"`
	Status     *int       `json:"status,omitempty"`
	Error      *string    `json:"error,omitempty"`
	Response   *string    `json:"response,omitempty"` // omitted with a status: an empty body
}

func storedAttempts(as []Attempt) []storedAttempt {
	out := make([]storedAttempt, len(as))
	for i, a := range as {
		// The offset names the event: its event_id is read back from the log.
		out[i] = storedAttempt{At: a.At, Offset: a.Offset, DurationMs: a.DurationMs, Status: a.Status}
		if a.Offset == nil {
			out[i].EventID = a.EventID
		}
		if a.Kind != "push" {
			out[i].Kind = a.Kind
		}
		if a.Error != nil {
			e := cleanText(*a.Error, 4096)
			out[i].Error = &e
		}
		if a.Response != nil && *a.Response != "" {
			r := cleanText(*a.Response, MaxAttemptResponse)
			out[i].Response = &r
		}
	}
	return out
}

// cleanText makes s storable as text: valid UTF-8, no NUL, at most max
// bytes, cut at a character boundary.
func cleanText(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
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
