package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/dispatch"
	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

var ctx = context.Background()

// receiver is a webhook endpoint that checks signatures with the official
// library and records what it accepted, per partition.
type receiver struct {
	t        *testing.T
	srv      *httptest.Server
	verifier *standardwebhooks.Webhook
	mu       sync.Mutex
	accepted map[string][]int64     // decider_id → offsets answered 2xx, in order
	attempts map[string][]time.Time // decider_id → every attempt's time
	inFlight map[string]int
	overlaps int
	answer   func(deciderID string, attempt int) (status int, retryAfter string)
	delay    time.Duration
	// The first attempt of these partitions takes this long.
	slowFirst map[string]time.Duration
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, accepted: map[string][]int64{}, attempts: map[string][]time.Time{}, inFlight: map[string]int{},
		answer: func(string, int) (int, string) { return http.StatusNoContent, "" }}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := r.verifier.Verify(body, req.Header); err != nil {
		r.t.Errorf("signature: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var ev store.Event
	if err := json.Unmarshal(body, &ev); err != nil || req.Header.Get("webhook-id") != ev.EventID.String() {
		r.t.Errorf("body %s, webhook-id %s", body, req.Header.Get("webhook-id"))
	}
	if len(ev.Tags) != 1 || ev.Tags[0] != "partition:"+ev.DeciderID || string(ev.Metadata) != `{"source":"setup"}` {
		r.t.Errorf("the push lacks the event's tags or metadata: %s", body)
	}
	r.mu.Lock()
	r.inFlight[ev.DeciderID]++
	if r.inFlight[ev.DeciderID] > 1 {
		r.overlaps++
	}
	r.attempts[ev.DeciderID] = append(r.attempts[ev.DeciderID], time.Now())
	status, retryAfter := r.answer(ev.DeciderID, len(r.attempts[ev.DeciderID]))
	delay := r.delay
	if len(r.attempts[ev.DeciderID]) == 1 && r.slowFirst[ev.DeciderID] > 0 {
		delay = r.slowFirst[ev.DeciderID]
	}
	r.mu.Unlock()
	select { // a receiver's work, widening any overlap window
	case <-time.After(delay):
	case <-req.Context().Done(): // the dispatcher gave up
		r.mu.Lock()
		r.inFlight[ev.DeciderID]--
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	r.inFlight[ev.DeciderID]--
	if status < 300 {
		r.accepted[ev.DeciderID] = append(r.accepted[ev.DeciderID], ev.Offset)
	}
	r.mu.Unlock()
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
}

func (r *receiver) acceptedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, offs := range r.accepted {
		n += len(offs)
	}
	return n
}

// setup makes a store with decider "order", a view pushing to rcv, and
// appends partitions × perPartition events; it returns each partition's offsets.
func setup(t *testing.T, rcv *receiver, partitions, perPartition int) (*store.Store, map[string][]int64) {
	t.Helper()
	st := storetest.NewStore(t)
	_, _, err := st.RegisterEventType(ctx, store.EventType{Decider: "order", Event: "created", EventVersion: 1})
	require.NoError(t, err)
	start := time.Now().Add(-time.Hour)
	v, _, err := st.RegisterView(ctx, store.ViewRegistration{View: "hooks", StartAt: &start, LockTimeoutS: 60, EdgeFunctionURL: &rcv.srv.URL})
	require.NoError(t, err)
	rcv.verifier, err = standardwebhooks.NewWebhook(*v.Secret)
	require.NoError(t, err)
	want := map[string][]int64{}
	for p := range partitions {
		id := fmt.Sprint("p", p)
		var prev *uuid.UUID
		for i := range perPartition {
			e := store.NewEvent{Event: "created", EventID: uuid.New(), EventVersion: 1, Decider: "order", DeciderID: id,
				Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), CommandID: uuid.New(), PreviousID: prev,
				Tags: []string{"partition:" + id}, Metadata: json.RawMessage(`{"source":"setup"}`)}
			res, err := st.AppendEvents(ctx, []store.NewEvent{e})
			require.NoError(t, err)
			prev = &e.EventID
			want[id] = append(want[id], res.Events[0].Offset)
		}
	}
	return st, want
}

func testConfig() dispatch.Config {
	return dispatch.Config{
		Guard:          dispatch.Guard{AllowPrivate: true}, // the receiver is on loopback
		Backoff:        dispatch.Backoff{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		PollInterval:   50 * time.Millisecond,
		AttemptTimeout: 5 * time.Second,
		MaxInFlight:    16,
	}
}

// counter counts a dispatcher's attempts.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) Attempt(string, string, time.Duration) { c.mu.Lock(); c.n++; c.mu.Unlock() }

func (c *counter) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// run starts a dispatcher until the test ends.
func run(t *testing.T, st dispatch.Store, cfg dispatch.Config) *counter {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	c := &counter{}
	go func() { done <- dispatch.New(st, cfg, zerolog.Nop(), c).Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestPushesEveryEventInOrder(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	st, want := setup(t, rcv, 6, 5)
	run(t, st, testConfig())
	waitFor(t, 30*time.Second, "every event pushed", func() bool { return rcv.acceptedCount() == 30 })
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	assert.Equal(t, want, rcv.accepted, "each partition in order, each event once")
	assert.Zero(t, rcv.overlaps)
}

// Failing partitions (500s, a 429 with Retry-After, a timeout) wait, in
// order; the others go on.
func TestFailingPartitionWaitsWhileOthersFlow(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.answer = func(id string, attempt int) (int, string) {
		switch {
		case id == "p0" && attempt <= 3:
			return http.StatusInternalServerError, ""
		case id == "p1" && attempt == 1:
			return http.StatusTooManyRequests, "1"
		}
		return http.StatusNoContent, ""
	}
	rcv.slowFirst = map[string]time.Duration{"p2": 3 * time.Second} // longer than the attempt timeout
	st, want := setup(t, rcv, 5, 4)
	cfg := testConfig()
	cfg.AttemptTimeout = time.Second
	run(t, st, cfg)
	waitFor(t, 30*time.Second, "every event pushed", func() bool { return rcv.acceptedCount() == 20 })
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	assert.Equal(t, want, rcv.accepted, "the failing partitions delivered later, in order")
	assert.Len(t, rcv.attempts["p0"], 4+3, "three failed attempts of its head, then the four events")
	gap := rcv.attempts["p1"][1].Sub(rcv.attempts["p1"][0])
	assert.GreaterOrEqual(t, gap, 900*time.Millisecond, "Retry-After: 1 honoured")
	assert.Len(t, rcv.attempts["p2"], 4+1, "the timed-out push was retried")
}

func TestPartitionIsParkedThenRetried(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	var mu sync.Mutex
	broken := true
	rcv.answer = func(id string, _ int) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if id == "p0" && broken {
			return http.StatusInternalServerError, ""
		}
		return http.StatusNoContent, ""
	}
	st, want := setup(t, rcv, 3, 2)
	cfg := testConfig()
	cfg.MaxAttempts = 3
	run(t, st, cfg)
	waitFor(t, 30*time.Second, "the partition parked", func() bool {
		v, err := st.GetView(ctx, "hooks")
		return err == nil && v.Status.PartitionsParked == 1
	})
	v, err := st.GetView(ctx, "hooks")
	require.NoError(t, err)
	require.NotNil(t, v.Status.LastError)
	assert.Equal(t, "HTTP 500", v.Status.LastError.Error)
	assert.Equal(t, "p0", v.Status.LastError.DeciderID)
	waitFor(t, 30*time.Second, "the others pushed", func() bool { return rcv.acceptedCount() == 4 })

	mu.Lock()
	broken = false
	mu.Unlock()
	_, err = st.RetryPartition(ctx, "hooks", "order", "p0")
	require.NoError(t, err)
	waitFor(t, 30*time.Second, "the parked partition pushed", func() bool { return rcv.acceptedCount() == 6 })
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	assert.Equal(t, want, rcv.accepted)
}

func TestGoneDisablesTheView(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.answer = func(string, int) (int, string) { return http.StatusGone, "" }
	st, _ := setup(t, rcv, 1, 1)
	run(t, st, testConfig())
	waitFor(t, 30*time.Second, "the view disabled", func() bool {
		v, err := st.GetView(ctx, "hooks")
		return err == nil && v.DispatchDisabledAt != nil
	})
}

// Two dispatchers at once: every event delivered, no partition pushed by
// both at the same time.
func TestTwoDispatchers(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.delay = 5 * time.Millisecond
	st, want := setup(t, rcv, 40, 3)
	cfg := testConfig()
	cfg.MaxInFlight = 8 // neither can take every partition at once
	a := run(t, st, cfg)
	b := run(t, storetest.NewStoreOn(t, st), cfg)
	waitFor(t, 60*time.Second, "every event pushed", func() bool { return rcv.acceptedCount() == 120 })
	assert.Positive(t, a.count(), "the first dispatcher pushed")
	assert.Positive(t, b.count(), "the second dispatcher pushed")
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	assert.Zero(t, rcv.overlaps, "a partition in flight at two dispatchers")
	assert.Equal(t, want, rcv.accepted)
}

// A shutdown lets pushes finish for ShutdownTimeout, then cancels them and
// gives their leases back: nothing stays leased.
func TestShutdownGivesLeasesBack(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.delay = 10 * time.Second // a receiver slower than the shutdown timeout
	st, _ := setup(t, rcv, 3, 1)
	cfg := testConfig()
	cfg.ShutdownTimeout = 300 * time.Millisecond
	cfg.AttemptTimeout = 30 * time.Second
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- dispatch.New(st, cfg, zerolog.Nop(), nil).Run(runCtx) }()
	waitFor(t, 10*time.Second, "pushes in flight", func() bool {
		v, err := st.GetView(ctx, "hooks")
		return err == nil && v.Status.PartitionsLeased == 3
	})
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the shutdown timeout")
	}
	v, err := st.GetView(ctx, "hooks")
	require.NoError(t, err)
	assert.Zero(t, v.Status.PartitionsLeased, "every lease given back")
	assert.Equal(t, int64(3), v.Status.EventsPending, "nothing was acked")
}

// A receiver is down (connections refused), then comes back: its backlog
// drains in order, and another view's pushes were not held up meanwhile.
// (Seconds here with a short backoff; minutes in life.)
func TestReceiverDownThenBack(t *testing.T) {
	t.Parallel()
	healthy := newReceiver(t)
	st, want := setup(t, healthy, 4, 5) // view "hooks" → the healthy receiver

	// A second view whose receiver's address refuses connections for now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	downAddr := ln.Addr().String()
	ln.Close()
	downURL := "http://" + downAddr + "/hook"
	start := time.Now().Add(-time.Hour)
	down, _, err := st.RegisterView(ctx, store.ViewRegistration{View: "down", StartAt: &start, LockTimeoutS: 60, EdgeFunctionURL: &downURL})
	require.NoError(t, err)

	cfg := testConfig()
	cfg.MaxAttempts = 1000 // not parked: it is only down for a while
	run(t, st, cfg)
	waitFor(t, 30*time.Second, "the healthy view drained while the other is down", func() bool { return healthy.acceptedCount() == 20 })
	// Its failures are recorded as the dispatcher settles them: wait for one.
	var v store.View
	waitFor(t, 30*time.Second, "the down view's failure recorded", func() bool {
		v, err = st.GetView(ctx, "down")
		require.NoError(t, err)
		return v.Status.LastError != nil
	})
	assert.Equal(t, int64(20), v.Status.EventsPending, "nothing of the down view was acked")
	assert.Equal(t, "connection refused", v.Status.LastError.Error)

	// The receiver comes back on the same address.
	back := &receiver{t: t, accepted: map[string][]int64{}, attempts: map[string][]time.Time{}, inFlight: map[string]int{},
		answer: func(string, int) (int, string) { return http.StatusNoContent, "" }}
	back.verifier, err = standardwebhooks.NewWebhook(*down.Secret)
	require.NoError(t, err)
	ln, err = net.Listen("tcp", downAddr)
	require.NoError(t, err, "the address was taken meanwhile")
	srv := &http.Server{Handler: http.HandlerFunc(back.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	waitFor(t, 30*time.Second, "the backlog drained", func() bool { return back.acceptedCount() == 20 })
	back.mu.Lock()
	defer back.mu.Unlock()
	assert.Equal(t, want, back.accepted, "in order per partition, each once")
}

// polling_delay_s is how often the dispatcher looks for a view's work when
// it hears of no new event: with a poll interval of an hour, a view polled
// every second still gets its retry (its receiver asked for one in a second)
// without any new event to wake the dispatcher.
func TestPollingDelayIsHonoured(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.answer = func(_ string, attempt int) (int, string) {
		if attempt == 1 {
			return http.StatusServiceUnavailable, "1"
		}
		return http.StatusNoContent, ""
	}
	st, want := setup(t, rcv, 1, 1)
	second := int64(1)
	_, _, err := st.RegisterView(ctx, store.ViewRegistration{View: "hooks", LockTimeoutS: 60,
		EdgeFunctionURL: &rcv.srv.URL, PollingDelayS: &second})
	require.NoError(t, err)
	cfg := testConfig()
	cfg.PollInterval = time.Hour
	run(t, st, cfg)
	waitFor(t, 30*time.Second, "the retry pushed", func() bool { return rcv.acceptedCount() == 1 })
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	assert.Equal(t, want, rcv.accepted)
}
