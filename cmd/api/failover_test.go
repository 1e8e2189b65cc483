package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store/storetest"
)

// A failover under load, on this machine: a primary with a hot standby, 8
// clients appending (each to a chain of its own, retrying an append that
// answered 503 with the same event_id, as a client should) and the
// dispatcher pushing every event. Replication stalls (the primary's WAL
// sender is stopped), then the primary is killed with SIGKILL and the
// standby promoted. The API and the dispatcher find the new primary by
// themselves through a multi-host DATABASE_URL with
// target_session_attrs=read-write.
//
// With a synchronous standby every answer is 201, 503 problem+json with
// Retry-After, or 200 for a retry of an append whose first answer was lost
// (never a 500); every acknowledged append is on the new primary; the
// dispatcher delivers every event at least once, in order per partition;
// and a projection paging the log, which the API reads from the standby
// (FSTORE_READ_DATABASE_URL) until it is promoted, sees every acknowledged
// event exactly once, in offset order.
// With an asynchronous standby the appends acknowledged during the stall
// are lost: the reason docs/operating.md asks for a synchronous one.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level fault test")
	}
	bins := [2]string{buildBinary(t, ".", "fstore-api"), buildBinary(t, "../dispatcher", "fstore-dispatcher")}
	t.Run("synchronous standby: no acknowledged append lost", func(t *testing.T) {
		t.Parallel()
		f := startFailover(t, bins, true)
		f.load = newChainLoad(f.api, 8)
		projection := newLogReader(f.api)
		time.Sleep(time.Second) // load before the crash
		f.crash()
		f.standby.Promote()
		waitReady(t, f.api.client, f.api.base)
		time.Sleep(time.Second) // load on the new primary
		acked := f.load.stop()

		t.Logf("statuses %v; %d appends acknowledged", f.load.statuses, len(acked))
		assert.Positive(t, f.load.statuses[http.StatusServiceUnavailable], "the outage was seen")
		assert.Zero(t, unreadable(t, f.api.client, f.api.base, acked), "every acknowledged append is on the new primary")
		f.rcv.requireAll(t, acked)
		f.rcv.requireInOrder(t, f.load.chains())
		projection.requireAll(t, acked)
		assert.Regexp(t, `fstore_standby_reads_total\{outcome="served"\} [1-9]`, string(f.api.call("GET", "/metrics", 200, "")),
			"the standby served reads before its promotion")
	})
	t.Run("asynchronous standby: appends acknowledged during a stall are lost", func(t *testing.T) {
		t.Parallel()
		f := startFailover(t, bins, false)
		f.load = newChainLoad(f.api, 8)
		time.Sleep(time.Second)
		f.crash()
		acked := f.load.stop() // before the promotion: no chain goes on from a lost event
		f.standby.Promote()
		waitReady(t, f.api.client, f.api.base)
		lost := unreadable(t, f.api.client, f.api.base, acked)
		t.Logf("statuses %v; %d appends acknowledged, %d of them lost", f.load.statuses, len(acked), lost)
		assert.Positive(t, lost, "an asynchronous standby misses what the primary acknowledged last")
	})
}

// failover is a primary, its standby, and the API and the dispatcher on
// both through one multi-host connection string.
type failover struct {
	primary *storetest.Cluster
	standby *storetest.Standby
	api     *instance
	rcv     *recorder
	load    *chainLoad
}

func startFailover(t *testing.T, bins [2]string, sync bool) *failover {
	f := &failover{primary: storetest.NewCluster(t), rcv: newRecorder(t)}
	f.standby = storetest.NewStandby(t, f.primary, sync)
	dbURL := multiHost(t, f.primary.URL, f.standby.URL)
	addr := "127.0.0.1:" + freePort(t)
	// Projection reads from the standby, which the failover then promotes.
	startBinary(t, bins[0], "DATABASE_URL="+dbURL, "FSTORE_READ_DATABASE_URL="+f.standby.URL,
		"FSTORE_ADDR="+addr, "FSTORE_LOG_LEVEL=error")
	f.api = &instance{t, &http.Client{Timeout: 10 * time.Second}, "http://" + addr} // a hang fails the test
	waitReady(t, f.api.client, f.api.base)
	startBinary(t, bins[1], "DATABASE_URL="+dbURL, "FSTORE_METRICS_ADDR=127.0.0.1:0",
		"FSTORE_ALLOW_PRIVATE_URLS=true", "FSTORE_DISPATCH_TIMEOUT=1s", "FSTORE_LOG_LEVEL=error")
	f.api.call("POST", "/v1/deciders/order/events", 201, `{"event":"created"}`)
	f.api.call("PUT", "/v1/views/hooks", 201, fmt.Sprintf(`{"start_at":"2020-01-01T00:00:00Z","edge_function_url":%q}`, f.rcv.url))
	return f
}

// crash stalls replication for a moment under load, then kills the primary
// and leaves it dead for as long as a failover manager takes to decide.
func (f *failover) crash() {
	f.primary.StallReplication()
	time.Sleep(500 * time.Millisecond)
	f.primary.Kill()
	time.Sleep(time.Second)
}

// multiHost joins the servers of two URLs of one database into one
// connection string that connects to whichever of them takes writes.
func multiHost(t *testing.T, first, second string) string {
	t.Helper()
	host := func(u string) string { return strings.SplitN(strings.SplitN(u, "@", 2)[1], "/", 2)[0] }
	rest := strings.SplitN(strings.SplitN(first, "@", 2)[1], "/", 2)[1]
	return "postgres://postgres@" + host(first) + "," + host(second) + "/" + rest + "&target_session_attrs=read-write"
}

// chainLoad is clients appending to a stream each, each event naming the
// previous one, retrying with the same event_id until the append is stored.
type chainLoad struct {
	in       *instance
	stopping atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	statuses map[int]int
	acked    [][]string // per client, its stream's events in order
}

func newChainLoad(in *instance, clients int) *chainLoad {
	l := &chainLoad{in: in, statuses: map[int]int{}, acked: make([][]string, clients)}
	for c := range clients {
		l.wg.Go(func() { l.run(c) })
	}
	return l
}

func (l *chainLoad) run(c int) {
	t := l.in.t
	prev := ""
	for !l.stopping.Load() {
		e := newEvent("order", fmt.Sprintf("chain-%d", c), prev, `{}`)
		for retry := false; ; retry = true {
			if retry && l.stopping.Load() {
				return // given up: not acknowledged
			}
			status, err := l.post(e.body)
			if err != nil {
				t.Errorf("append: %v (the API must answer, not hang or drop)", err)
				return
			}
			if status == http.StatusCreated || (retry && status == http.StatusOK) {
				break
			}
			if status != http.StatusServiceUnavailable {
				t.Errorf("status %d (retry %v)", status, retry)
				return
			}
			time.Sleep(50 * time.Millisecond) // a client backing off as Retry-After asks
		}
		l.mu.Lock()
		l.acked[c] = append(l.acked[c], e.id)
		l.mu.Unlock()
		prev = e.id
	}
}

// post appends and checks that a 503 is problem+json with Retry-After.
func (l *chainLoad) post(body string) (int, error) {
	resp, err := l.in.client.Post(l.in.base+"/v1/events", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	l.mu.Lock()
	l.statuses[resp.StatusCode]++
	l.mu.Unlock()
	if resp.StatusCode == http.StatusServiceUnavailable {
		var p map[string]any
		if resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Retry-After") == "" ||
			json.Unmarshal(raw, &p) != nil || p["type"] != "urn:fstore:problem:unavailable" {
			l.in.t.Errorf("a 503 that is not a problem with Retry-After: %s %s", resp.Header, raw)
		}
	}
	return resp.StatusCode, nil
}

// stop ends the load and returns every acknowledged event_id.
func (l *chainLoad) stop() []string {
	l.stopping.Store(true)
	l.wg.Wait()
	var all []string
	for _, ids := range l.acked {
		all = append(all, ids...)
	}
	return all
}

func (l *chainLoad) chains() map[string][]string {
	out := map[string][]string{}
	for c, ids := range l.acked {
		out[fmt.Sprintf("chain-%d", c)] = ids
	}
	return out
}

// requireInOrder checks that each partition's pushes went forward one event
// at a time: an event arrives only once every earlier event of its stream
// has (repeats, at least once, are allowed).
func (r *recorder) requireInOrder(t *testing.T, chains map[string][]string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for stream, want := range chains {
		index := map[string]int{}
		for i, id := range want {
			index[id] = i
		}
		reached := -1 // the furthest event delivered so far
		for _, id := range r.received[stream] {
			i, ok := index[id]
			if !ok {
				continue // stored, but its answer was lost: never acknowledged
			}
			require.LessOrEqual(t, i, reached+1, "stream %s: event %d pushed before event %d", stream, i, reached+1)
			reached = max(reached, i)
		}
		require.Equal(t, len(want)-1, reached, "stream %s: every event pushed", stream)
	}
}

// logReader pages the whole log through the API, 100 events at a time,
// retrying a 503, as a projection does.
type logReader struct {
	in   *instance
	mu   sync.Mutex
	seen []string
	errs []string
	stop atomic.Bool
	done chan struct{}
}

func newLogReader(in *instance) *logReader {
	r := &logReader{in: in, done: make(chan struct{})}
	go r.run()
	return r
}

func (r *logReader) run() {
	defer close(r.done)
	after := int64(0)
	for !r.stop.Load() {
		resp, err := r.in.client.Get(fmt.Sprintf("%s/v1/events?after=%d&limit=100", r.in.base, after))
		if err != nil {
			r.fail("read: %v", err)
			return
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var page struct {
			Events []struct {
				EventID string `json:"event_id"`
				Offset  int64  `json:"offset"`
			} `json:"events"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &page) != nil {
			r.fail("read: status %d: %s", resp.StatusCode, raw)
			return
		}
		r.mu.Lock()
		for _, e := range page.Events {
			if e.Offset <= after {
				r.errs = append(r.errs, fmt.Sprintf("offset %d after cursor %d", e.Offset, after))
			}
			after = e.Offset
			r.seen = append(r.seen, e.EventID)
		}
		r.mu.Unlock()
		if len(page.Events) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (r *logReader) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// requireAll waits until the reader has seen every event of want, then
// stops it and requires that it saw none twice.
func (r *logReader) requireAll(t *testing.T, want []string) {
	t.Helper()
	defer func() { r.stop.Store(true); <-r.done }()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		seen := map[string]int{}
		for _, id := range r.seen {
			seen[id]++
		}
		errs := append([]string(nil), r.errs...)
		r.mu.Unlock()
		require.Empty(t, errs)
		missing := 0
		for _, id := range want {
			if seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			for id, n := range seen {
				require.Equal(t, 1, n, "event %s read %d times", id, n)
			}
			return
		}
		require.True(t, time.Now().Before(deadline), "the projection misses %d of %d acknowledged events", missing, len(want))
	}
}
