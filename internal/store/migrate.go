package store

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Migration is one numbered schema change, from a file NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Advisory lock (two-int form, so it never collides with the read horizon's
// bigint keys) held by each migration's transaction: several instances may
// start at once.
const (
	migrateLockClass = 0x66737472 // "fstr"
	migrateLockID    = 1
)

// migrationLockTimeout bounds how long one migration waits for a table lock,
// so that a migration stuck behind a long transaction fails instead of
// blocking every query queued behind it.
const migrationLockTimeout = "10s"

// LoadMigrations reads every *.sql file at the root of fsys, in version order.
// A file must be named NNNN_name.sql with a unique version.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	var out []Migration
	seen := map[int]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".sql" {
			return err
		}
		base := path.Base(p)
		num, name, ok := strings.Cut(strings.TrimSuffix(base, ".sql"), "_")
		v, convErr := strconv.Atoi(num)
		if !ok || convErr != nil || v <= 0 {
			return fmt.Errorf("migration %s: want NNNN_name.sql", p)
		}
		if other, dup := seen[v]; dup {
			return fmt.Errorf("migrations %s and %s share version %d", other, p, v)
		}
		seen[v] = p
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: load migrations: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Migrate applies the migrations of fsys that the database lacks, each in its
// own transaction, and records them in fstore_schema_migrations. Instances
// starting at once apply each exactly once, directly or through a
// transaction pooler. It returns the versions it applied (another instance
// may have applied the others).
func (s *Store) Migrate(ctx context.Context, fsys fs.FS) ([]int, error) {
	migrations, err := LoadMigrations(fsys)
	if err != nil {
		return nil, err
	}
	err = s.underMigrationLock(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS fstore_schema_migrations (
			version    INT PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: migrations table: %w", interpretError(err))
	}
	current, err := schemaVersion(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	var applied []int
	for _, m := range migrations {
		if m.Version <= current {
			continue
		}
		done, err := s.applyMigration(ctx, m)
		if err != nil {
			return applied, err
		}
		if done {
			applied = append(applied, m.Version)
		}
	}
	return applied, nil
}

// underMigrationLock runs f in a transaction that holds the migration lock.
// The lock is transaction-scoped: through a transaction pooler (PgBouncer
// in transaction mode) every transaction may run on another server
// connection, so a session-level lock would be released on a connection
// that does not hold it, and stay behind on the one that does.
func (s *Store) underMigrationLock(ctx context.Context, f func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", migrateLockClass, migrateLockID); err != nil {
			return err
		}
		return f(tx)
	})
}

// applyMigration applies m unless another instance did first; it tells
// whether this call applied it.
func (s *Store) applyMigration(ctx context.Context, m Migration) (bool, error) {
	applied := false
	err := s.underMigrationLock(ctx, func(tx pgx.Tx) error {
		// Read under the lock: in READ COMMITTED this statement sees what the
		// lock's previous holder committed.
		current, err := schemaVersion(ctx, tx)
		if err != nil || current >= m.Version {
			return err
		}
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+migrationLockTimeout+"'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO fstore_schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
		applied = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: migration %04d_%s: %w", m.Version, m.Name, interpretError(err))
	}
	return applied, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func schemaVersion(ctx context.Context, q querier) (int, error) {
	var v int
	err := q.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM fstore_schema_migrations`).Scan(&v)
	if err != nil {
		return 0, interpretError(err)
	}
	return v, nil
}

// SchemaVersion returns the newest migration applied to the database, 0 for
// a database fstore never migrated.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('fstore_schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, interpretError(err)
	}
	if !exists {
		return 0, nil
	}
	return schemaVersion(ctx, s.pool)
}

// LatestVersion returns the newest version among the migrations of fsys: the
// version a database must be at for this build to serve it.
func LatestVersion(fsys fs.FS) (int, error) {
	ms, err := LoadMigrations(fsys)
	if err != nil || len(ms) == 0 {
		return 0, err
	}
	return ms[len(ms)-1].Version, nil
}
