package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store/storetest"
)

// The API and the dispatcher through a real PgBouncer in transaction mode,
// with no other setting, as an operator runs them: two API instances and a
// dispatcher start at once on an empty database (all three migrate), then
// the main paths of each suite run across both instances (what one writes,
// the other reads, acks or conditions on), a long poll on one instance wakes
// for an append on the other, and the dispatcher pushes every event in order.
func TestThroughPgBouncer(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dbURL := storetest.NewEmptyDatabase(t)
	pooled := storetest.NewPgBouncer(t, dbURL).URL(t, dbURL)
	rcv := newRecorder(t)

	apiBin, dispatcherBin := buildBinary(t, ".", "fstore-api"), buildBinary(t, "../dispatcher", "fstore-dispatcher")
	a, b := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	metrics := "127.0.0.1:" + freePort(t)
	procs := []*exec.Cmd{
		startBinary(t, apiBin, "DATABASE_URL="+pooled, "FSTORE_ADDR="+a),
		startBinary(t, apiBin, "DATABASE_URL="+pooled, "FSTORE_ADDR="+b),
		startBinary(t, dispatcherBin, "DATABASE_URL="+pooled, "FSTORE_METRICS_ADDR="+metrics,
			"FSTORE_ALLOW_PRIVATE_URLS=true", "FSTORE_DISPATCH_TIMEOUT=2s"),
	}
	client := &http.Client{Timeout: 30 * time.Second}
	A, B := &instance{t, client, "http://" + a}, &instance{t, client, "http://" + b}
	waitReady(t, client, A.base)
	waitReady(t, client, B.base)
	waitHealthy(t, client, "http://"+metrics)
	requireMigratedOnce(t, dbURL)

	want := eventSourcingPaths(A, B)
	want = append(want, consumingPaths(A, B)...)
	A.call("PUT", "/v1/views/hooks", 201, fmt.Sprintf(`{"start_at":"2020-01-01T00:00:00Z","edge_function_url":%q}`, rcv.url))
	for i := range 20 { // more while the dispatcher pushes, through both instances
		in := []*instance{A, B}[i%2]
		want = append(want, in.appendFirst("order", fmt.Sprintf("push-%d", i)))
	}
	rcv.requireAll(t, want)

	for _, p := range procs {
		require.NoError(t, p.Process.Signal(syscall.SIGTERM))
	}
	for _, p := range procs {
		require.NoError(t, p.Wait(), "a clean exit")
	}
}

// eventSourcingPaths registers, appends (single, retried, conflicting,
// batched, conditional) and reads, across two instances; it returns the
// event_ids stored.
func eventSourcingPaths(A, B *instance) []string {
	t := A.t
	A.call("POST", "/v1/deciders/order/events", 201, `{"event":"created"}`)
	B.call("POST", "/v1/deciders/order/events", 200, `{"event":"created"}`)
	assert.Contains(t, string(B.call("GET", "/v1/deciders/order", 200, "")), `"created"`)

	first := newEvent("order", "o-1", "", `{"sku":"x"}`)
	A.call("POST", "/v1/events", 201, first.body)
	B.call("POST", "/v1/events", 200, first.body) // a retry on the other instance
	conflict := decode(t, B.call("POST", "/v1/events", 409, newEvent("order", "o-1", "", `{}`).body))
	assert.Equal(t, first.id, conflict["last_event_id"])

	second, third := newEvent("order", "o-1", first.id, `{}`), newEvent("order", "o-2", "", `{"sku":"x"}`)
	B.call("POST", "/v1/events/batch", 201, `{"events":[`+second.body+`,`+third.body+`]}`)

	query := `{"items":[{"types":["created"],"matches":[{"sku":"x"}]}]}`
	read := decode(t, A.call("POST", "/v1/events/query", 200, `{"query":`+query+`}`))
	require.Len(t, read["events"], 2)
	decided := newEvent("order", "o-3", "", `{"sku":"x"}`)
	cond := fmt.Sprintf(`{"events":[%s],"condition":{"query":%s,"after":%v}}`, decided.body, query, read["position"])
	B.call("POST", "/v1/events/batch", 201, cond)
	late := fmt.Sprintf(`{"events":[%s],"condition":{"query":%s,"after":%v}}`, newEvent("order", "o-4", "", `{}`).body, query, read["position"])
	A.call("POST", "/v1/events/batch", 409, late)

	stream := decode(t, A.call("GET", "/v1/events?decider=order&decider_id=o-1", 200, ""))
	assert.Len(t, stream["events"], 2)
	assert.Len(t, decode(t, B.call("GET", "/v1/events?decider=order", 200, ""))["events"], 4)
	assert.Len(t, decode(t, A.call("GET", "/v1/events?after=0&limit=100", 200, ""))["events"], 4)
	assert.Equal(t, second.id, decode(t, B.call("GET", "/v1/events/last?decider=order&decider_id=o-1", 200, ""))["event_id"])
	A.call("GET", "/v1/events/"+third.id, 200, "")
	return []string{first.id, second.id, third.id, decided.id}
}

// consumingPaths registers a polled view, leases on one instance and acks
// on the other, nacks, and long-polls on one instance while the other
// appends; it returns the event_ids stored.
func consumingPaths(A, B *instance) []string {
	t := A.t
	A.call("PUT", "/v1/views/orders", 201, `{"start_at":"2020-01-01T00:00:00Z"}`)
	leased := decode(t, A.call("POST", "/v1/views/orders/stream", 200, `{"limit":100,"max_per_partition":100}`))
	for _, e := range lastPerPartition(leased) {
		B.call("POST", "/v1/views/orders/ack", 200, ackBody(e))
	}

	polled := make(chan map[string]any, 1)
	go func() { polled <- decode(t, A.call("POST", "/v1/views/orders/stream", 200, `{"wait_s":20}`)) }()
	time.Sleep(300 * time.Millisecond) // let the poll reach its wait; the assertions hold either way
	woke := B.appendFirst("order", "o-5")
	var got map[string]any
	select {
	case got = <-polled:
	case <-time.After(25 * time.Second):
		t.Fatal("the long poll on one instance did not wake for an append on the other")
	}
	events := got["events"].([]any)
	require.Len(t, events, 1)
	e := events[0].(map[string]any)
	assert.Equal(t, woke, e["event_id"])
	B.call("POST", "/v1/views/orders/nack", 200, fmt.Sprintf(`{"decider":"order","decider_id":"o-5","lease_id":%q}`, e["lease_id"]))
	again := decode(t, B.call("POST", "/v1/views/orders/stream", 200, `{}`))["events"].([]any)
	require.Len(t, again, 1, "a nacked event comes again")
	A.call("POST", "/v1/views/orders/ack", 200, ackBody(again[0].(map[string]any)))
	status := decode(t, B.call("GET", "/v1/views/orders", 200, ""))["status"].(map[string]any)
	assert.EqualValues(t, 0, status["events_pending"])
	assert.EqualValues(t, 4, status["partitions"])
	return []string{woke}
}

func lastPerPartition(leased map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, e := range leased["events"].([]any) {
		m := e.(map[string]any)
		out[m["decider_id"].(string)] = m
	}
	return out
}

func ackBody(e map[string]any) string {
	return fmt.Sprintf(`{"decider":%q,"decider_id":%q,"offset":%v,"lease_id":%q}`, e["decider"], e["decider_id"], e["offset"], e["lease_id"])
}

// instance is one API process, called over HTTP.
type instance struct {
	t      *testing.T
	client *http.Client
	base   string
}

// call sends a request and requires the status; it returns the body.
func (in *instance) call(method, path string, status int, body string) []byte {
	in.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequest(method, in.base+path, rd)
	require.NoError(in.t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.client.Do(req)
	require.NoError(in.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(in.t, err)
	require.Equal(in.t, status, resp.StatusCode, "%s %s: %s", method, path, out)
	return out
}

// appendFirst appends the first event of a new stream and returns its id.
func (in *instance) appendFirst(decider, id string) string {
	e := newEvent(decider, id, "", `{}`)
	in.call("POST", "/v1/events", 201, e.body)
	return e.id
}

type newEventBody struct{ id, body string }

func newEvent(decider, deciderID, previous, data string) newEventBody {
	id := uuid.NewString()
	prev := "null"
	if previous != "" {
		prev = fmt.Sprintf("%q", previous)
	}
	return newEventBody{id, fmt.Sprintf(`{"event":"created","event_id":%q,"decider":%q,"decider_id":%q,"data":%s,"command_id":%q,"previous_id":%s}`,
		id, decider, deciderID, data, uuid.NewString(), prev)}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	return m
}

// recorder is a webhook receiver that records each push, in arrival order
// per partition.
type recorder struct {
	url      string
	mu       sync.Mutex
	received map[string][]string // decider_id → event_ids
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{received: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var e struct{ EventID, DeciderID string }
		body, _ := io.ReadAll(req.Body)
		if json.Unmarshal(body, &struct {
			EventID   *string `json:"event_id"`
			DeciderID *string `json:"decider_id"`
		}{&e.EventID, &e.DeciderID}) != nil || req.Header.Get("webhook-id") != e.EventID {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.received[e.DeciderID] = append(r.received[e.DeciderID], e.EventID)
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// requireAll waits until every event of want was pushed.
func (r *recorder) requireAll(t *testing.T, want []string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		seen := map[string]bool{}
		for _, ids := range r.received {
			for _, id := range ids {
				seen[id] = true
			}
		}
		r.mu.Unlock()
		missing := 0
		for _, id := range want {
			if !seen[id] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "%d of %d events not pushed", missing, len(want))
	}
}

func buildBinary(t *testing.T, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	return bin
}

// startBinary starts bin with env, killed when the test ends if still
// running. The tests' receivers listen on loopback, which the API refuses
// to register and the dispatcher to push to unless allowed.
func startBinary(t *testing.T, bin string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), "FSTORE_LOG_LEVEL=warn", "FSTORE_ALLOW_PRIVATE_URLS=true"), env...)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func waitHealthy(t *testing.T, c *http.Client, base string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := c.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "%s did not become healthy", base)
	}
}

// requireMigratedOnce checks, on the server directly, that every migration
// was recorded exactly once.
func requireMigratedOnce(t *testing.T, dbURL string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var rows, distinct int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT version) FROM fstore_schema_migrations`).Scan(&rows, &distinct))
	assert.Equal(t, distinct, rows, "each migration recorded once")
	assert.Positive(t, rows)
}
