package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
)

// poolerFigures compare the API directly on PostgreSQL and through
// PgBouncer in transaction mode (where the store uses cache_describe).
type poolerFigures struct {
	direct, pooled       float64 // single-event appends/s, 32 clients
	directRead, poolRead latency // a 100-event stream read
}

// poolerBench starts a PgBouncer (scripts/pgbouncer.sh) in front of the
// bench's server and measures an API on each path, twice in turn.
func poolerBench(ctx context.Context, o options, dbURL string) (poolerFigures, error) {
	var f poolerFigures
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		return f, err
	}
	dir, err := reachableTempDir("fstore-bench-pgbouncer")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	home := filepath.Join(dir, "b")
	port, err := freePort()
	if err != nil {
		return f, err
	}
	out, err := exec.CommandContext(ctx, "scripts/pgbouncer.sh", "start", home, port, cfg.Host, fmt.Sprint(cfg.Port)).Output()
	if err != nil {
		return f, fmt.Errorf("pgbouncer.sh start: %w", err)
	}
	defer exec.Command("scripts/pgbouncer.sh", "stop", home).Run() //nolint:errcheck
	pooled := throughHost(dbURL, strings.TrimSpace(string(out)))
	for round := range 2 {
		for _, path := range []struct {
			url    string
			rate   *float64
			stream *latency
		}{{dbURL, &f.direct, &f.directRead}, {pooled, &f.pooled, &f.poolRead}} {
			rate, read, err := appendAndRead(ctx, o, path.url)
			if err != nil {
				return f, err
			}
			*path.rate = max(*path.rate, rate)
			if path.stream.p50 == 0 || read.p50 < path.stream.p50 {
				*path.stream = read
			}
		}
		log.Printf("round %d: direct %.0f/s (read p50 %s), through PgBouncer %.0f/s (read p50 %s)",
			round+1, f.direct, ms(f.directRead.p50), f.pooled, ms(f.poolRead.p50))
	}
	return f, nil
}

func appendAndRead(ctx context.Context, o options, dbURL string) (float64, latency, error) {
	api, err := startAPI(ctx, o.api, dbURL)
	if err != nil {
		return 0, latency{}, err
	}
	defer api.stop()
	c := newClient(api.base, 2*o.clients)
	rate, err := singleAppends(c, o.clients, 10, o.duration/2)
	if err != nil {
		return 0, latency{}, err
	}
	read, err := readLatency(c, 100, 2000)
	return rate, read, err
}

// standbyFigures is how soon an appended event shows in a log read.
type standbyFigures struct {
	primary, standby latency // from the append's 201 to the event in a log read
}

// standbyBench starts a primary and a hot standby of its own (scripts/pg.sh
// start and standby, durable settings, streaming replication), then
// appends 100 events/s through one API while a reader pages the log
// through another: once reading the primary, once the standby
// (FSTORE_READ_DATABASE_URL). It measures how long each appended event
// took to show in the reader's pages: the staleness of a standby reader.
func standbyBench(ctx context.Context, o options) (standbyFigures, error) {
	var f standbyFigures
	dir, err := reachableTempDir("fstore-bench-standby")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	ports := make([]string, 2)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return f, err
		}
	}
	primaryURL, err := pgScript(ctx, "start", filepath.Join(dir, "primary"), ports[0])
	if err != nil {
		return f, err
	}
	defer pgScript(context.WithoutCancel(ctx), "stop", filepath.Join(dir, "primary")) //nolint:errcheck
	standbyURL, err := pgScript(ctx, "standby", filepath.Join(dir, "standby"), filepath.Join(dir, "primary"), ports[1])
	if err != nil {
		return f, err
	}
	defer pgScript(context.WithoutCancel(ctx), "stop", filepath.Join(dir, "standby")) //nolint:errcheck
	writer, err := startAPI(ctx, o.api, primaryURL)
	if err != nil {
		return f, err
	}
	defer writer.stop()
	w := newClient(writer.base, 4)
	if err := w.register("bench", "created"); err != nil {
		return f, err
	}
	for _, run := range []struct {
		env []string
		lag *latency
	}{{nil, &f.primary}, {[]string{"FSTORE_READ_DATABASE_URL=" + standbyURL}, &f.standby}} {
		reader, err := startAPI(ctx, o.api, primaryURL, run.env...)
		if err != nil {
			return f, err
		}
		*run.lag, err = visibilityLag(w, newClient(reader.base, 4), 1000)
		reader.stop()
		if err != nil {
			return f, err
		}
	}
	return f, nil
}

// visibilityLag appends n events at 100/s through w while a reader pages the
// log through r, and returns how long each took from its 201 to a page (0
// when a page had it before the 201 arrived).
func visibilityLag(w, r *client, n int) (latency, error) {
	var mu sync.Mutex
	sent := map[string]bool{}
	seenAt, ackedAt := map[string]time.Time{}, map[string]time.Time{}
	var stop atomic.Bool
	readErr := make(chan error, 1)
	after := int64(0)
	if body, err := r.do("GET", "/v1/events?after=0&limit=10000", nil, 200); err == nil {
		after = lastOffset(body, after)
	}
	go func() { readErr <- pageLogUntil(r, &stop, after, &mu, sent, seenAt) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		id := uuid.New()
		mu.Lock()
		sent[id.String()] = true
		mu.Unlock()
		if _, err := w.do("POST", "/v1/events", appendEvent(nil, id, uuid.NewString(), i, nil), 201); err != nil {
			stop.Store(true)
			return latency{}, err
		}
		mu.Lock()
		ackedAt[id.String()] = time.Now()
		mu.Unlock()
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		seen := len(seenAt)
		mu.Unlock()
		if seen >= n {
			break
		}
		if time.Now().After(deadline) {
			stop.Store(true)
			return latency{}, fmt.Errorf("the reader saw %d of %d events within a minute", seen, n)
		}
	}
	stop.Store(true)
	if err := <-readErr; err != nil {
		return latency{}, err
	}
	lags := make([]time.Duration, 0, n)
	for id, t1 := range seenAt {
		lags = append(lags, max(0, t1.Sub(ackedAt[id])))
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	return latency{p50: lags[len(lags)/2], p99: lags[len(lags)*99/100]}, nil
}

// pageLogUntil pages the log from after until stop, noting when each event
// of sent first shows.
func pageLogUntil(r *client, stop *atomic.Bool, after int64, mu *sync.Mutex, sent map[string]bool, seenAt map[string]time.Time) error {
	for !stop.Load() {
		body, err := r.do("GET", fmt.Sprintf("/v1/events?after=%d&limit=1000", after), nil, 200)
		if err != nil {
			return err
		}
		var page struct {
			Events []struct {
				EventID string `json:"event_id"`
				Offset  int64  `json:"offset"`
			} `json:"events"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return err
		}
		now := time.Now()
		mu.Lock()
		for _, e := range page.Events {
			if sent[e.EventID] {
				seenAt[e.EventID] = now
			}
			after = e.Offset
		}
		mu.Unlock()
	}
	return nil
}

func lastOffset(body []byte, def int64) int64 {
	var page struct {
		Events []struct {
			Offset int64 `json:"offset"`
		} `json:"events"`
	}
	if json.Unmarshal(body, &page) != nil || len(page.Events) == 0 {
		return def
	}
	return page.Events[len(page.Events)-1].Offset
}

// pgScript runs scripts/pg.sh and returns what it printed (a URL).
func pgScript(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "scripts/pg.sh", args...).Output()
	if err != nil {
		return "", fmt.Errorf("pg.sh %s: %w", args[0], err)
	}
	return strings.TrimSpace(string(out)), nil
}

// reachableTempDir makes a folder the unprivileged server user can reach.
func reachableTempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

func freePort() (string, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	_, port, err := net.SplitHostPort(addr)
	return port, err
}

// throughHost returns dbURL with its server replaced by addr (host:port).
func throughHost(dbURL, addr string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	q := u.Query()
	q.Del("host")
	q.Del("port")
	u.Host, u.RawQuery = addr, q.Encode()
	return u.String()
}
