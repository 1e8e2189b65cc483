package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
)

// pushReceiver is a webhook endpoint that answers 204 at once and records
// when each event arrived.
type pushReceiver struct {
	srv     *http.Server
	url     string
	mu      sync.Mutex
	arrived map[uuid.UUID]time.Time
	count   int
	pushes  int                // every push, repeats included
	order   map[string][]int64 // offsets per partition, in arrival order
}

func newPushReceiver() (*pushReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &pushReceiver{arrived: map[uuid.UUID]time.Time{}, order: map[string][]int64{}, url: "http://" + ln.Addr().String() + "/hook"}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		now := time.Now()
		body, _ := io.ReadAll(req.Body)
		var e struct {
			EventID   uuid.UUID `json:"event_id"`
			DeciderID string    `json:"decider_id"`
			Offset    int64     `json:"offset"`
		}
		_ = json.Unmarshal(body, &e)
		r.mu.Lock()
		r.pushes++
		r.order[e.DeciderID] = append(r.order[e.DeciderID], e.Offset)
		if _, seen := r.arrived[e.EventID]; !seen {
			r.arrived[e.EventID] = now
			r.count++
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *pushReceiver) delivered() int { r.mu.Lock(); defer r.mu.Unlock(); return r.count }

// outOfOrder counts the partitions whose pushes ever went back to an
// earlier offset (allowed only after a dispatcher crash, which the bench
// does not cause), and returns the pushes beyond one per event.
func (r *pushReceiver) outOfOrder() (partitions, repeats int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, offs := range r.order {
		for i := 1; i < len(offs); i++ {
			if offs[i] <= offs[i-1] {
				partitions++
				break
			}
		}
	}
	return partitions, r.pushes - r.count
}

// waitDelivered waits until n distinct events have arrived.
func (r *pushReceiver) waitDelivered(n int, limit time.Duration) error {
	for start := time.Now(); r.delivered() < n; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > limit {
			return fmt.Errorf("pushed %d of %d events in %s", r.delivered(), n, limit)
		}
	}
	return nil
}

func (r *pushReceiver) close() { _ = r.srv.Close() }

type pushFigures struct {
	deliveries   float64 // per second, from a backlog
	latency      latency // append sent → push received
	appendsWhile float64 // single appends/s while a view is pushed
	rss          float64 // the dispatcher's peak, MiB
}

// pushBench measures the dispatcher: draining a backlog of partitions ×
// perPartition events, append-to-delivery latency at 100 appends/s, and
// single appends while a view is being pushed.
func pushBench(ctx context.Context, c *client, dispatcherBin, dbURL string, o options, partitions, perPartition int) (pushFigures, error) {
	var f pushFigures
	rcv, err := newPushReceiver()
	if err != nil {
		return f, err
	}
	defer rcv.close()
	d, err := startDispatcher(ctx, dispatcherBin, dbURL)
	if err != nil {
		return f, err
	}
	defer d.stop()

	// Backlog: events first, then a view starting before them.
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	if err := loadPartitions(c, partitions, perPartition, "push"); err != nil {
		return f, err
	}
	start := time.Now()
	if _, err := c.do("PUT", "/v1/views/push_backlog", fmt.Appendf(nil, `{"start_at":%q,"edge_function_url":%q}`, since, rcv.url), 201); err != nil {
		return f, err
	}
	total := partitions * perPartition
	for rcv.delivered() < total {
		if time.Since(start) > 5*time.Minute {
			return f, fmt.Errorf("pushed %d of %d events in 5 minutes", rcv.delivered(), total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.deliveries = float64(total) / time.Since(start).Seconds()
	if _, err := c.do("DELETE", "/v1/views/push_backlog", nil, 204); err != nil {
		return f, err
	}

	// Latency: a live view, 100 appends/s of new events.
	if _, err := c.do("PUT", "/v1/views/push_live", fmt.Appendf(nil, `{"edge_function_url":%q}`, rcv.url), 201); err != nil {
		return f, err
	}
	sent := map[uuid.UUID]time.Time{}
	tick := time.NewTicker(10 * time.Millisecond)
	stream, prev := "", (*uuid.UUID)(nil)
	for i := range 1000 {
		<-tick.C
		if i%10 == 0 {
			stream, prev = uuid.NewString(), nil
		}
		id := uuid.New()
		body := appendEvent(nil, id, stream, i, prev)
		sent[id] = time.Now()
		if _, err := c.do("POST", "/v1/events", bytes.ReplaceAll(body, []byte(`"decider":"bench"`), []byte(`"decider":"push"`)), 201); err != nil {
			tick.Stop()
			return f, err
		}
		prev = &id
	}
	tick.Stop()
	deadline := time.Now().Add(time.Minute)
	var lat []time.Duration
	for len(lat) < len(sent) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		rcv.mu.Lock()
		lat = lat[:0]
		for id, t0 := range sent {
			if t1, ok := rcv.arrived[id]; ok {
				lat = append(lat, t1.Sub(t0))
			}
		}
		rcv.mu.Unlock()
	}
	if len(lat) < len(sent) {
		return f, fmt.Errorf("only %d of %d live events pushed within a minute", len(lat), len(sent))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	f.latency = latency{p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}

	// Appends while the live view is pushed.
	if f.appendsWhile, err = singleAppends(c, o.clients, 10, o.duration); err != nil {
		return f, err
	}
	f.rss = d.peakRSS()
	if _, err := c.do("DELETE", "/v1/views/push_live", nil, 204); err != nil {
		return f, err
	}
	return f, nil
}
