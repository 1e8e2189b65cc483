package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Reads from a hot standby (WithReadReplica). Decisions stay on the
// primary: a stream, its last event, one event, every write. Projection
// reads (the log or a decider by cursor, queries, views' status) may go to
// the standby. Whole-log and query reads there stop below a read horizon
// sampled on the primary that the standby has replayed past
// (sql/migrations/0006_replicas.sql says why that never skips an event).
// A standby that is down, or behind every sample kept, is skipped: the read
// goes to the primary.

// Option configures a Store at Open.
type Option func(*openOptions)

type openOptions struct {
	readURL string
}

// WithReadReplica sends projection reads to the hot standby at url. An
// empty url changes nothing: every read goes to the primary.
func WithReadReplica(url string) Option {
	return func(o *openOptions) { o.readURL = url }
}

const (
	// sampleMaxAge is how old the newest horizon sample may be for a
	// standby read: older, and the reader samples the primary first (one
	// small query, shared by all readers of the process).
	sampleMaxAge = logWatchInterval
	// recentSamples are the newest samples kept: they serve a standby
	// that keeps up. spacedSamples, taken at least sampleSpacing apart,
	// serve one that lags by up to about spacedSamples × sampleSpacing.
	recentSamples = 8
	spacedSamples = 8
	sampleSpacing = 500 * time.Millisecond
	// replicaPause is how long reads skip a standby that could not be
	// reached, rather than wait for it on every read.
	replicaPause = time.Second
)

// replica is the standby's pool and the horizons sampled on the primary.
type replica struct {
	pool      *pgxpool.Pool
	downUntil atomic.Int64 // unix nanoseconds

	mu             sync.Mutex // held while sampling: readers wait for one sample
	recent, spaced []horizonSample
	served, missed atomic.Int64 // reads the standby served, and those it could not
}

// horizonSample is a read horizon of the primary and a WAL position past
// the commit of every event below it.
type horizonSample struct {
	horizon int64
	lsn     string
	at      time.Time
}

func openReplica(ctx context.Context, url string) (*replica, error) {
	cfg, err := poolConfig(url, "read database url")
	if err != nil {
		return nil, err
	}
	// The standby may be down now: the safe mode, and no error.
	if chooseQueryMode(ctx, url, cfg.ConnConfig) != nil {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: read database: %w", err)
	}
	return &replica{pool: pool}, nil
}

// ReplicaReads counts the reads a standby served and those it could not
// (down, or behind every sample), which went to the primary; both are 0
// without a standby.
func (s *Store) ReplicaReads() (served, missed int64) {
	if s.replica == nil {
		return 0, 0
	}
	return s.replica.served.Load(), s.replica.missed.Load()
}

// watchHorizon is the read horizon the log watcher polls; with a standby,
// its samples serve the standby's readers too.
func (s *Store) watchHorizon(ctx context.Context) (int64, error) {
	if s.replica == nil {
		var h int64
		err := s.pool.QueryRow(ctx, `SELECT fstore_read_horizon()`).Scan(&h)
		return h, err
	}
	smp, err := s.sampleHorizon(ctx)
	if err != nil {
		return 0, err
	}
	s.replica.mu.Lock()
	s.replica.keep(smp)
	s.replica.mu.Unlock()
	return smp.horizon, nil
}

func (s *Store) sampleHorizon(ctx context.Context) (horizonSample, error) {
	smp := horizonSample{at: time.Now()}
	if err := s.pool.QueryRow(ctx, `SELECT horizon, lsn::text FROM fstore_horizon_sample()`).Scan(&smp.horizon, &smp.lsn); err != nil {
		return smp, interpretError(err)
	}
	return smp, nil
}

// keep records a sample (r.mu held): always among the recent ones, and
// among the spaced ones when the last of those is old enough.
func (r *replica) keep(smp horizonSample) {
	r.recent = append(r.recent, smp)
	if len(r.recent) > recentSamples {
		r.recent = r.recent[1:]
	}
	if n := len(r.spaced); n == 0 || smp.at.Sub(r.spaced[n-1].at) >= sampleSpacing {
		r.spaced = append(r.spaced, smp)
		if len(r.spaced) > spacedSamples {
			r.spaced = r.spaced[1:]
		}
	}
}

// samples returns the kept horizons and positions, sampling the primary
// first when the newest is older than sampleMaxAge.
func (s *Store) samples(ctx context.Context) ([]int64, []string, error) {
	r := s.replica
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.recent); n == 0 || time.Since(r.recent[n-1].at) > sampleMaxAge {
		smp, err := s.sampleHorizon(ctx)
		if err != nil {
			return nil, nil, err
		}
		r.keep(smp)
	}
	hs, lsns := make([]int64, 0, recentSamples+spacedSamples), make([]string, 0, recentSamples+spacedSamples)
	for _, smp := range append(r.spaced, r.recent...) {
		hs, lsns = append(hs, smp.horizon), append(lsns, smp.lsn)
	}
	return hs, lsns, nil
}

// errStandbyBehind: the standby has replayed none of the sampled horizons.
var errStandbyBehind = errors.New("standby behind every sampled horizon")

// fromStandby runs a read of events that honours the read horizon
// (read_events, query_events) on the standby, when there is one that can
// serve it, and returns the events and the horizon they were read below.
// served is false when the caller must read the primary instead.
func (s *Store) fromStandby(ctx context.Context, sql string, args ...any) (evs []Event, horizon int64, served bool, err error) {
	if s.replica == nil || time.Now().UnixNano() < s.replica.downUntil.Load() {
		return nil, 0, false, nil
	}
	evs, horizon, err = s.readOnStandby(ctx, sql, args...)
	if err == nil {
		s.replica.served.Add(1)
		return evs, horizon, true, nil
	}
	if s.replica.skip(ctx, err) {
		return nil, 0, false, nil
	}
	return nil, 0, false, err
}

// readOnStandby chooses the horizon and reads below it in one round trip:
// one pipeline, whose implicit transaction carries the choice to the read.
func (s *Store) readOnStandby(ctx context.Context, sql string, args ...any) ([]Event, int64, error) {
	hs, lsns, err := s.samples(ctx)
	if err != nil {
		return nil, 0, err
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT fstore_use_horizon($1, $2::text[]::pg_lsn[])`, hs, lsns)
	b.Queue(sql, args...)
	br := s.replica.pool.SendBatch(ctx, b)
	defer br.Close()
	var h int64
	if err := br.QueryRow().Scan(&h); err != nil {
		return nil, 0, standbyError(err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, 0, standbyError(err)
	}
	evs, err := collectEvents(rows)
	if err != nil {
		return nil, 0, standbyError(err)
	}
	return evs, h, br.Close()
}

func standbyError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == codeStandbyBehind {
		return errStandbyBehind
	}
	return interpretError(err)
}

// skip tells whether a standby read that failed with err should go to the
// primary instead, pausing the standby when it cannot be reached.
func (r *replica) skip(ctx context.Context, err error) bool {
	switch {
	case ctx.Err() != nil:
		return false
	case errors.Is(err, errStandbyBehind):
	case errors.Is(err, ErrUnavailable):
		r.downUntil.Store(time.Now().Add(replicaPause).UnixNano())
	default:
		return false
	}
	r.missed.Add(1)
	return true
}

// onReader runs f on the standby when there is one that answers, else on
// the primary: for reads that need no horizon (views' status).
func (s *Store) onReader(ctx context.Context, f func(dbtx) error) error {
	if s.replica != nil && time.Now().UnixNano() >= s.replica.downUntil.Load() {
		err := f(s.replica.pool)
		if err == nil {
			s.replica.served.Add(1)
			return nil
		}
		if !s.replica.skip(ctx, err) {
			return err
		}
	}
	return f(s.pool)
}
