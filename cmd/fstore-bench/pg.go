package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// createDatabase (re)creates a database and returns its URL.
func createDatabase(ctx context.Context, admin, name string) (string, error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return "", err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// Each pgbench client appends to a stream of its own and starts a new stream
// every 10 events, as the HTTP clients do. -D cnt=0 starts the counter.
const (
	seedScript = `\set cnt :cnt + 1
\if :cnt % 10 = 1
SELECT event_id AS prev, decider_id AS sid FROM append_event('created', gen_random_uuid(), 'bench', gen_random_uuid(), '{"n": 1, "note": "a typical small payload"}', gen_random_uuid(), NULL) \gset
\else
SELECT event_id AS prev, decider_id AS sid FROM append_event('created', gen_random_uuid(), 'bench', :sid, '{"n": 1, "note": "a typical small payload"}', gen_random_uuid(), :prev) \gset
\endif
`
	ourScript = `\set cnt :cnt + 1
\if :cnt % 10 = 1
SELECT event_id AS prev, decider_id AS sid FROM append_event('created', gen_random_uuid(), 'bench', gen_random_uuid()::text, '{"n": 1, "note": "a typical small payload"}', gen_random_uuid(), NULL) \gset
\else
SELECT event_id AS prev, decider_id AS sid FROM append_event('created', gen_random_uuid(), 'bench', :sid, '{"n": 1, "note": "a typical small payload"}', gen_random_uuid(), :prev) \gset
\endif
`
)

const seedMissing = "fstore-sql's schema was not found (set FSTORE_SEED_SCHEMA): the seed was not measured"

// seedDatabase creates a database with fstore-sql's schema; "" when the
// schema file is missing (the report then says the seed was not measured).
func seedDatabase(ctx context.Context, admin, name, schemaPath string) (string, error) {
	schema, err := os.ReadFile(schemaPath)
	if schemaPath == "" || os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	db, err := createDatabase(ctx, admin, name)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, string(schema)); err != nil {
		return "", fmt.Errorf("load the seed schema: %w", err)
	}
	return db, nil
}

// seedAppends runs the seed's append_event under pgbench in a database of
// its own.
func seedAppends(ctx context.Context, admin string, o options) (float64, string, error) {
	seedDB, err := seedDatabase(ctx, admin, "bench_seed", o.seed)
	if err != nil || seedDB == "" {
		return 0, seedMissing, err
	}
	conn, err := pgx.Connect(ctx, seedDB)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT register_decider_event('bench', 'created', 'benchmark event')`); err != nil {
		return 0, "", err
	}
	tps, err := pgbench(ctx, seedDB, seedScript, o.clients, o.duration)
	return tps, "", err
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs script with clients connections for d and returns its tps.
func pgbench(ctx context.Context, dbURL, script string, clients int, d time.Duration) (float64, error) {
	if dbURL == "" {
		return 0, nil
	}
	f, err := os.CreateTemp("", "fstore-bench-*.sql")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script); err != nil {
		return 0, err
	}
	f.Close()
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return 0, err
	}
	bin := "pgbench"
	if dir := os.Getenv("PG_BINDIR"); dir != "" {
		bin = filepath.Join(dir, "pgbench")
	}
	cmd := exec.CommandContext(ctx, bin, "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", "2",
		"-T", strconv.Itoa(int(d.Seconds())), "-D", "cnt=0", "-f", f.Name(), dbURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	if strings.Contains(string(out), "number of failed transactions: ") &&
		!strings.Contains(string(out), "number of failed transactions: 0 ") {
		return 0, fmt.Errorf("pgbench transactions failed:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// describeMachine names what the figures were measured on.
func describeMachine(ctx context.Context, admin string) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		_, _ = fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
	}
	pg := "PostgreSQL ?"
	if conn, err := pgx.Connect(ctx, admin); err == nil {
		var v string
		if conn.QueryRow(ctx, `SHOW server_version`).Scan(&v) == nil {
			pg = "PostgreSQL " + v
		}
		conn.Close(ctx)
	}
	return fmt.Sprintf("%s, %d cores%s; %s (fsync on, synchronous_commit on, shared_buffers 512MB); %s; %s",
		cpu, runtime.NumCPU(), mem, pg, runtime.Version(), time.Now().UTC().Format("2006-01-02"))
}
