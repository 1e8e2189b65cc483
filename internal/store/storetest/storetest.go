// Package storetest gives tests a real, migrated PostgreSQL database of their
// own. Import it only from _test.go files.
//
// DATABASE_URL names a server where the tests may create databases (make test
// starts a throwaway one). Each test gets a fresh database cloned from a
// template that is migrated once per migration set, and dropped at cleanup.
// With FSTORE_TEST_PGBOUNCER set to the host:port of a PgBouncer in front of
// that server (scripts/pgbouncer.sh temp sets it), the stores of NewStore and
// NewStoreOn reach their databases through it: make test runs the HTTP and
// dispatch suites that way too.
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fstore/fstore/internal/store"
	fstoresql "github.com/fstore/fstore/sql"
)

var (
	urls         sync.Map // *store.Store → its database URL
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// AdminURL returns DATABASE_URL, failing the test when it is unset: these
// tests need a real PostgreSQL (run them with make test).
func AdminURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" {
		t.Fatal("DATABASE_URL is not set: run the tests with 'make test', which starts a throwaway PostgreSQL")
	}
	return u
}

// NewStore returns a Store on a fresh migrated database, closed and dropped
// when the test ends.
func NewStore(t testing.TB) *store.Store {
	t.Helper()
	dbURL := NewDatabase(t)
	if addr := os.Getenv("FSTORE_TEST_PGBOUNCER"); addr != "" {
		dbURL = (&PgBouncer{Addr: addr}).URL(t, dbURL)
	}
	s := OpenStore(t, dbURL)
	urls.Store(s, dbURL)
	return s
}

// OpenStore opens a Store on dbURL (a database of the test's, perhaps
// through a Proxy or a PgBouncer), closed when the test ends.
func OpenStore(t testing.TB, dbURL string, opts ...store.Option) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dbURL, opts...)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// URL returns the database URL of a Store made by NewStore.
func URL(t testing.TB, s *store.Store) string {
	t.Helper()
	u, ok := urls.Load(s)
	if !ok {
		t.Fatal("storetest.URL: store was not made by storetest.NewStore")
	}
	return u.(string)
}

// NewStoreOn opens another Store, with a pool of one connection, on the
// database of s: for tests that race separate connections.
func NewStoreOn(t testing.TB, s *store.Store) *store.Store {
	t.Helper()
	u, err := url.Parse(URL(t, s))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "1")
	u.RawQuery = q.Encode()
	other, err := store.Open(context.Background(), u.String())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(other.Close)
	urls.Store(other, URL(t, s))
	return other
}

// NewDatabase creates a fresh migrated database and returns its URL. It is
// dropped when the test ends (after the test's own cleanups close its pools).
func NewDatabase(t testing.TB) string {
	t.Helper()
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate(AdminURL(t)) })
	if templateErr != nil {
		t.Fatalf("template database: %v", templateErr)
	}
	return createDatabase(t, templateName)
}

// NewEmptyDatabase creates a fresh database without fstore's schema.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return createDatabase(t, "template0")
}

func createDatabase(t testing.TB, template string) string {
	t.Helper()
	admin := AdminURL(t)
	name := "fstore_test_" + randomHex(6)
	ctx := context.Background()
	err := withAdmin(ctx, admin, func(c *pgx.Conn) error {
		// CREATE DATABASE fails while anyone else is connected to the
		// template; that lasts only as long as a template is being built.
		var err error
		for attempt := 0; attempt < 50; attempt++ {
			_, err = c.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, pgx.Identifier{template}.Sanitize()))
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "55006" {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
		return err
	})
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		_ = withAdmin(ctx, admin, func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
			return err
		})
	})
	return withDatabase(t, admin, name)
}

// ensureTemplate builds (once per migration set, across test processes) a
// database with every migration applied, to clone tests' databases from.
func ensureTemplate(admin string) (string, error) {
	ctx := context.Background()
	sum := sha256.New()
	err := fs.WalkDir(fstoresql.Migrations, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fstoresql.Migrations, p)
		sum.Write([]byte(p))
		sum.Write(b)
		return err
	})
	if err != nil {
		return "", err
	}
	name := "fstore_template_" + hex.EncodeToString(sum.Sum(nil))[:12]
	err = withAdmin(ctx, admin, func(c *pgx.Conn) error {
		// Test binaries of several packages run at once: one builds it.
		if _, err := c.Exec(ctx, `SELECT pg_advisory_lock(1718842482, 99)`); err != nil {
			return err
		}
		defer c.Exec(ctx, `SELECT pg_advisory_unlock(1718842482, 99)`) //nolint:errcheck
		var exists bool
		if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil || exists {
			return err
		}
		building := name + "_wip"
		if _, err := c.Exec(ctx, `DROP DATABASE IF EXISTS `+building); err != nil {
			return err
		}
		if _, err := c.Exec(ctx, `CREATE DATABASE `+building+` TEMPLATE template0`); err != nil {
			return err
		}
		s, err := store.Open(ctx, replaceDatabase(admin, building))
		if err != nil {
			return err
		}
		_, err = s.Migrate(ctx, fstoresql.Migrations)
		s.Close()
		if err != nil {
			return err
		}
		_, err = c.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+name)
		return err
	})
	return name, err
}

func withAdmin(ctx context.Context, admin string, f func(*pgx.Conn) error) error {
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return f(c)
}

func withDatabase(t testing.TB, admin, name string) string {
	t.Helper()
	u := replaceDatabase(admin, name)
	if u == "" {
		t.Fatalf("DATABASE_URL must be a postgres:// URL")
	}
	return u
}

// replaceDatabase returns the URL admin with its database set to name.
func replaceDatabase(admin, name string) string {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return ""
	}
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
