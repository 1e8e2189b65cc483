package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// How statements reach the server. pgx's default, cache_statement,
// prepares each statement once per connection under a name and then sends
// only its parameters: the cheapest per read, and per append within the
// noise of the shared benchmark machine (docs/benchmarks.md measures them).
// A transaction pooler (PgBouncer in transaction mode) breaks it: each
// transaction runs on whichever server connection is free, where that name
// is unknown or was prepared by another client ("prepared statement
// stmtcache_… already exists"). Through a pooler the store uses
// cache_describe: unnamed statements, parsed on every execution, whose
// descriptions pgx caches, so that an execution is still one round trip and
// a pgx.Batch still one pipeline in one implicit transaction (conditional
// appends rely on that). exec would also be safe, but it sends parameters
// as text by their Go type, which changes what a []byte means, and it
// measured slower than both.

// queryModeParam is the connection-string setting that chooses the mode;
// a connection string that sets it is obeyed.
const queryModeParam = "default_query_exec_mode"

// chooseQueryMode sets cfg's query mode unless url chose one: cache_describe
// behind a connection pooler, cache_statement otherwise.
func chooseQueryMode(ctx context.Context, url string, cfg *pgx.ConnConfig) error {
	if strings.Contains(url, queryModeParam) {
		return nil
	}
	pooled, err := behindPooler(ctx, cfg)
	if err != nil {
		return err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	if pooled {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	return nil
}

// behindPooler tells whether a connection pooler answers for the server:
// the process id the server announced at login (BackendKeyData, the key of
// cancel requests) is not the one that runs the session's statements. A
// transaction pooler must announce a key of its own, since a cancel request
// has to reach whichever server connection runs the client's statement at
// that moment; PgBouncer, Odyssey and pgcat all do. A server that cannot
// tell its process id counts as pooled: the safe mode works everywhere.
func behindPooler(ctx context.Context, cfg *pgx.ConnConfig) (bool, error) {
	probe := cfg.Copy()
	probe.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol // leaves nothing behind on the server
	conn, err := pgx.ConnectConfig(ctx, probe)
	if err != nil {
		return false, fmt.Errorf("store: connect: %w", interpretError(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var pid uint32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return true, nil
	}
	return pid != conn.PgConn().PID(), nil
}

// QueryExecMode names how the store sends statements: cache_statement
// (named prepared statements), or cache_describe when a connection pooler
// answers for PostgreSQL, or what the connection string chose.
func (s *Store) QueryExecMode() string {
	return modeName(s.pool.Config().ConnConfig.DefaultQueryExecMode)
}

// modeName spells a mode as default_query_exec_mode does.
func modeName(m pgx.QueryExecMode) string {
	switch m {
	case pgx.QueryExecModeCacheStatement:
		return "cache_statement"
	case pgx.QueryExecModeCacheDescribe:
		return "cache_describe"
	case pgx.QueryExecModeDescribeExec:
		return "describe_exec"
	case pgx.QueryExecModeExec:
		return "exec"
	case pgx.QueryExecModeSimpleProtocol:
		return "simple_protocol"
	}
	return m.String()
}
