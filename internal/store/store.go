// Package store is fstore's domain and its PostgreSQL storage: event types,
// events and the read horizon. It owns every SQL statement and every
// transaction, converts driver errors into the sentinel errors below, and
// never logs: it returns errors and lets its callers decide.
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
	pool    *pgxpool.Pool
	appends *coalescer
	watch   *logWatcher
}

// DefaultMaxConns is the pool size used when the connection string does not
// set pool_max_conns: enough connections for PostgreSQL to group commits.
const DefaultMaxConns = 20

// Open connects to the database at url (a PostgreSQL URL or DSN; pgxpool
// settings such as pool_max_conns are honoured) and checks that it answers.
// It does not apply migrations: call Migrate.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse database url: %w", err)
	}
	// pgxpool removes pool_* settings once parsed: the original string tells
	// whether the user chose a size.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
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
	s.appends = newCoalescer(s, coalescerWorkers, coalescerMaxGroup)
	s.watch = newLogWatcher(s)
	return s, nil
}

// Close finishes the appends under way, then closes the pool, waiting for
// connections in use to be returned.
func (s *Store) Close() {
	s.appends.close()
	s.pool.Close()
}

// Ping checks that the database answers; it returns ErrUnavailable if not.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return interpretError(err)
	}
	return nil
}
