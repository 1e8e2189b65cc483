// Package store is fstore's domain and its PostgreSQL storage: event types,
// events and the read horizon, queries and conditional appends, views and
// their partitions. It owns every SQL statement and every transaction,
// converts driver errors into the sentinel errors of errors.go, and never
// logs: it returns errors and lets its callers decide.
//
// What lives in SQL and what in Go. The migrations (sql/migrations) hold the
// schema and every rule a row must obey — constraints, and the triggers that
// check an append (registered type, previous event of the same stream, not
// after a final one) and take the read horizon's lock — and the functions
// fstore-sql users call (append_event, read_events, register_view,
// stream_events, ack_event, query_events, append_events_if, …), along with
// whatever Go and SQL callers must compute identically (the read horizon,
// the lock keys of conditional appends). Go holds what only the API needs:
// grouping concurrent appends into one statement (coalesce.go), choosing
// statements for speed, and describing errors for HTTP users (messages.go).
//
// The two append paths — the Go store's own INSERTs (events.go,
// coalesce.go) and the SQL function append_event — are kept equal by that
// split: the rules are in the table, which both hit, so neither can skip
// one; each path writes the identical-retry comparison once (storedSQL;
// append_event's SELECT). TestAppendPathsAgree runs one scenario through
// both and requires the same outcome at every step: change one path, and
// it tells whether the other must follow.
package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is fstore's storage over one PostgreSQL connection pool. It keeps no
// state besides the pool, so any number of processes may share a database.
type Store struct {
	pool         *pgxpool.Pool
	replica      *replica // nil: every read goes to the primary
	appends      *coalescer
	conditionals *conditionals
	positions    *positions
	watch        *logWatcher
	// Live follows: the process's one reader of new events, and the
	// catch-up pages all followers may have in flight.
	feed       *feed
	pageTokens chan struct{}
	catchUp    catchUpBounds
}

// DefaultMaxConns is the pool size used when the connection string does not
// set pool_max_conns: enough connections for PostgreSQL to group commits.
const DefaultMaxConns = 20

// Open connects to the database at url (a PostgreSQL URL or DSN; pgxpool
// settings such as pool_max_conns are honoured) and checks that it answers;
// a standby given WithReadReplica is not required to answer yet. It does
// not apply migrations: call Migrate.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	var o openOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := poolConfig(url, "database url")
	if err != nil {
		return nil, err
	}
	if err := chooseQueryMode(ctx, url, cfg.ConnConfig); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if o.readURL != "" {
		if s.replica, err = openReplica(ctx, o.readURL); err != nil {
			pool.Close()
			return nil, err
		}
	}
	s.appends = newCoalescer(s, coalescerWorkers, coalescerMaxGroup)
	s.conditionals = newConditionals(s)
	s.positions = &positions{s: s}
	s.watch = newLogWatcher(s)
	s.feed = newFeed(s)
	s.pageTokens = make(chan struct{}, catchUpReads)
	s.catchUp = defaultCatchUp
	return s, nil
}

// poolConfig parses url (what names it in the error) with the pool size
// DefaultMaxConns unless url sets pool_max_conns.
func poolConfig(url, what string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse %s: %w", what, err)
	}
	// pgxpool removes pool_* settings once parsed: the original string tells
	// whether the user chose a size.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	return cfg, nil
}

// Close finishes the appends under way, then closes the pool, waiting for
// connections in use to be returned.
func (s *Store) Close() {
	s.appends.close()
	s.conditionals.close()
	s.pool.Close()
	if s.replica != nil {
		s.replica.pool.Close()
	}
}

// Ping checks that the database answers; it returns ErrUnavailable if not.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return interpretError(err)
	}
	return nil
}
