package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// An operator handles a receiver that keeps failing, with the real
// dispatcher process and the API's partition routes: p1's second event is
// poison (always 500), p2's receiver is down (503) until fixed. Both park,
// are listed, show their attempts; the poison event is skipped, the rest
// retried in bulk, and every other event of the scoped view is delivered in
// order; events outside the view's scope are never pushed.
func TestReceiverKeepsFailing(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	bin := filepath.Join(t.TempDir(), "fstore-dispatcher")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	ctx := context.Background()
	st := storetest.NewStore(t)

	var mu sync.Mutex
	received := map[string][]int64{}
	var poison atomic.Int64
	var p2Fixed, outOfScope atomic.Bool
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e store.Event
		_ = json.Unmarshal(body, &e)
		switch {
		case e.Decider != "order":
			outOfScope.Store(true)
		case e.Offset == poison.Load():
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"poison: cannot parse amount"}`))
			return
		case e.DeciderID == "p2" && !p2Fixed.Load():
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		received[e.DeciderID] = append(received[e.DeciderID], e.Offset)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()

	for _, d := range []string{"order", "noise"} {
		_, _, err := st.RegisterEventType(ctx, store.EventType{Decider: d, Event: "created", EventVersion: 1})
		require.NoError(t, err)
	}
	want := map[string][]int64{}
	for _, id := range []string{"p1", "p2", "p3"} {
		var prev, noisePrev *uuid.UUID
		for i := range 4 {
			e := store.NewEvent{Event: "created", EventID: uuid.New(), EventVersion: 1, Decider: "order", DeciderID: id,
				Data: json.RawMessage(`{}`), CommandID: uuid.New(), PreviousID: prev}
			n := e
			n.Decider, n.EventID, n.PreviousID = "noise", uuid.New(), noisePrev
			res, err := st.AppendEvents(ctx, []store.NewEvent{e, n})
			require.NoError(t, err)
			prev, noisePrev = &e.EventID, &n.EventID
			if id == "p1" && i == 1 {
				poison.Store(res.Events[0].Offset)
				continue // skipped below: never delivered
			}
			want[id] = append(want[id], res.Events[0].Offset)
		}
	}

	api := httptest.NewServer(httpapi.NewServer(st, httpapi.Options{Logger: zerolog.Nop(), AllowPrivateURLs: true}).Handler())
	defer api.Close()
	call := func(method, path string, body any) map[string]any {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, api.URL+path, rd)
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &out)
		require.Less(t, resp.StatusCode, 300, "%s %s: %s", method, path, raw)
		return out
	}
	call("PUT", "/v1/views/hooks", map[string]any{"start_at": time.Now().Add(-time.Hour).Format(time.RFC3339),
		"edge_function_url": rcv.URL, "deciders": []string{"order"}})

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+storetest.URL(t, st), "FSTORE_METRICS_ADDR=127.0.0.1:0",
		"FSTORE_ALLOW_PRIVATE_URLS=true", "FSTORE_DISPATCH_TIMEOUT=1s", "FSTORE_DISPATCH_MAX_ATTEMPTS=3",
		"FSTORE_LOG_LEVEL=error")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	// Parked and listed.
	parked := func() []any { return call("GET", "/v1/views/hooks/partitions?state=parked", nil)["partitions"].([]any) }
	waitUntil(t, "p1 and p2 parked", func() bool { return len(parked()) == 2 })
	view := call("GET", "/v1/views/hooks", nil)["status"].(map[string]any)
	assert.EqualValues(t, 2, view["partitions_parked"])
	assert.NotNil(t, view["last_error"])
	p1 := parked()[0].(map[string]any)
	assert.Equal(t, "p1", p1["decider_id"])
	assert.Equal(t, "HTTP 500", p1["last_error"])
	assert.EqualValues(t, 500, p1["last_status"])

	// The attempts say what was tried, newest first.
	attempts := call("GET", "/v1/views/hooks/partitions/order/p1/attempts", nil)["attempts"].([]any)
	require.Len(t, attempts, 4, "the first event delivered, three pushes of the poison event, then parked")
	assert.EqualValues(t, 204, attempts[3].(map[string]any)["status"])
	for _, a := range attempts[:3] {
		a := a.(map[string]any)
		assert.EqualValues(t, poison.Load(), a["offset"])
		assert.EqualValues(t, 500, a["status"])
		assert.Contains(t, a["response"], "poison: cannot parse amount", "the receiver's answer is kept")
	}
	detail := call("GET", "/v1/views/hooks/partitions/order/p1", nil)
	assert.EqualValues(t, poison.Load(), detail["next_event"].(map[string]any)["offset"])

	// Skip the poison event; fix p2's receiver and retry the rest in bulk.
	call("POST", "/v1/views/hooks/partitions/order/p1/skip", map[string]any{"offset": poison.Load()})
	p2Fixed.Store(true)
	assert.EqualValues(t, 1, call("POST", "/v1/views/hooks/retry", nil)["retried"], "p2; p1 went on when skipped")

	waitUntil(t, "every other event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id, offs := range want {
			if len(unique(received[id])) < len(offs) {
				return false
			}
		}
		return true
	})
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
	mu.Lock()
	defer mu.Unlock()
	for id, offs := range want {
		assert.Equal(t, offs, unique(received[id]), "partition %s: delivered in order, the poison event skipped", id)
		assert.Equal(t, received[id], unique(received[id]), "partition %s: delivered once each, in order", id)
	}
	assert.False(t, outOfScope.Load(), "events outside the view's scope are never pushed")
	view = call("GET", "/v1/views/hooks", nil)["status"].(map[string]any)
	assert.Nil(t, view["last_error"], "delivering again cleared the failures")
	assert.EqualValues(t, 0, view["partitions_failing"])
	assert.Empty(t, call("GET", "/v1/views/hooks/partitions?state=failing", nil)["partitions"])
	kinds := map[string]int{}
	for _, a := range call("GET", "/v1/views/hooks/partitions/order/p1/attempts?limit=100", nil)["attempts"].([]any) {
		kinds[fmt.Sprint(a.(map[string]any)["kind"], " ", a.(map[string]any)["status"])]++
	}
	assert.Equal(t, map[string]int{"push 500": 3, "skip <nil>": 1, "push 204": 3}, kinds, "every push and the skip")
}
