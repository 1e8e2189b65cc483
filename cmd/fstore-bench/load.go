package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// client speaks to the API over HTTP with a connection per concurrent caller.
type client struct {
	base string
	http *http.Client
}

func newClient(base string, conns int) *client {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute}
	return &client{base: base, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

func (c *client) do(method, path string, body []byte, want int) ([]byte, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, out)
	}
	return out, nil
}

// status sends a request and returns its status, whatever it is.
func (c *client) status(method, path string, body []byte) (int, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

func (c *client) register(decider, event string) error {
	_, err := c.do("POST", "/v1/deciders/"+decider+"/events", []byte(`{"event":"`+event+`"}`), http.StatusCreated)
	return err
}

// appendEvent is the JSON body of one event; prev is nil for a first event.
func appendEvent(buf []byte, id uuid.UUID, stream string, n int, prev *uuid.UUID) []byte {
	buf = fmt.Appendf(buf, `{"event":"created","event_id":"%s","decider":"bench","decider_id":"%s","data":{"n":%d,"note":"a typical small payload"},"command_id":"%s","previous_id":`,
		id, stream, n, uuid.New())
	if prev == nil {
		return append(buf, "null}"...)
	}
	return fmt.Appendf(buf, `"%s"}`, prev)
}

// batchLoad appends total events in batches of size, each batch holding
// size/10 new streams of 10 chained events, from workers concurrent clients.
// It returns events per second.
func batchLoad(c *client, total, size, workers int) (float64, error) {
	return batchLoadOf(c, total, size, workers, appendEvent)
}

// eventBody writes the JSON of one event to append.
type eventBody func(buf []byte, id uuid.UUID, stream string, n int, prev *uuid.UUID) []byte

// batchLoadOf is batchLoad with events written by body.
func batchLoadOf(c *client, total, size, workers int, body eventBody) (float64, error) {
	requests := total / size
	var next atomic.Int64
	errs := make(chan error, workers)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			buf := make([]byte, 0, size*300)
			for next.Add(1) <= int64(requests) {
				buf = append(buf[:0], `{"events":[`...)
				for s := 0; s < size/10; s++ {
					stream := uuid.NewString()
					var prev *uuid.UUID
					for i := range 10 {
						if s > 0 || i > 0 {
							buf = append(buf, ',')
						}
						id := uuid.New()
						buf = body(buf, id, stream, i, prev)
						prev = &id
					}
				}
				buf = append(buf, "]}"...)
				if _, err := c.do("POST", "/v1/events/batch", buf, http.StatusCreated); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(requests*size) / time.Since(start).Seconds(), nil
}

// singleAppends runs clients that each append one event per request to a
// stream of their own, starting a new stream every perStream events, for d.
func singleAppends(c *client, clients, perStream int, d time.Duration) (float64, error) {
	return singleAppendsOf(c, clients, perStream, d, appendEvent)
}

// singleAppendsOf is singleAppends with events written by body.
func singleAppendsOf(c *client, clients, perStream int, d time.Duration, body eventBody) (float64, error) {
	n, elapsed, err := countedAppendsOf(c, clients, perStream, d, body)
	return float64(n) / elapsed.Seconds(), err
}

// countedAppends is singleAppends returning how many appends it made and
// how long they took.
func countedAppends(c *client, clients, perStream int, d time.Duration) (int64, time.Duration, error) {
	return countedAppendsOf(c, clients, perStream, d, appendEvent)
}

// countedAppendsOf is countedAppends with events written by body.
func countedAppendsOf(c *client, clients, perStream int, d time.Duration, body eventBody) (int64, time.Duration, error) {
	var count atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			buf := make([]byte, 0, 512)
			var prev *uuid.UUID
			stream := ""
			for i := 0; time.Now().Before(deadline); i++ {
				if i%perStream == 0 {
					stream, prev = uuid.NewString(), nil
				}
				id := uuid.New()
				buf = body(buf[:0], id, stream, i, prev)
				if _, err := c.do("POST", "/v1/events", buf, http.StatusCreated); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				prev = &id
				count.Add(1)
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, 0, err
	}
	return count.Load(), time.Since(start), nil
}

type growth struct {
	first, last float64 // appends/s over all clients in the first and last thousand
	perThousand []float64
}

// growingStreams has each client grow one stream to n events and times each
// thousand; the rate of a thousand is clients × 1000 / its mean duration.
func growingStreams(c *client, clients, n int) (growth, error) {
	thousands := n / 1000
	durations := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			stream := uuid.NewString()
			buf := make([]byte, 0, 512)
			var prev *uuid.UUID
			t0 := time.Now()
			for i := range thousands * 1000 {
				id := uuid.New()
				buf = appendEvent(buf[:0], id, stream, i, prev)
				if _, err := c.do("POST", "/v1/events", buf, http.StatusCreated); err != nil {
					errs[w] = err
					return
				}
				prev = &id
				if (i+1)%1000 == 0 {
					durations[w] = append(durations[w], time.Since(t0))
					t0 = time.Now()
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return growth{}, err
		}
	}
	var g growth
	for k := range thousands {
		var sum time.Duration
		for w := range clients {
			sum += durations[w][k]
		}
		mean := sum / time.Duration(clients)
		g.perThousand = append(g.perThousand, float64(clients)*1000/mean.Seconds())
	}
	g.first, g.last = g.perThousand[0], g.perThousand[len(g.perThousand)-1]
	return g, nil
}

type latency struct{ p50, p99 time.Duration }

// readLatency stores 20 streams of size events, then reads them n times in
// turn over HTTP, one request at a time.
func readLatency(c *client, size, n int) (latency, error) {
	streams, err := storeStreams(c, size)
	if err != nil {
		return latency{}, err
	}
	return readStreams(c, streams, size, n)
}

// storeStreams stores 20 streams of size events and returns their ids.
func storeStreams(c *client, size int) ([]string, error) {
	streams := make([]string, 20)
	for s := range streams {
		streams[s] = uuid.NewString()
		buf := []byte(`{"events":[`)
		var prev *uuid.UUID
		for i := range size {
			if i > 0 {
				buf = append(buf, ',')
			}
			id := uuid.New()
			buf = appendEvent(buf, id, streams[s], i, prev)
			prev = &id
		}
		buf = append(buf, "]}"...)
		if _, err := c.do("POST", "/v1/events/batch", buf, http.StatusCreated); err != nil {
			return nil, err
		}
	}
	return streams, nil
}

// readStreams reads the streams n times in turn (after 100 reads that warm
// up connections and caches), one request at a time.
func readStreams(c *client, streams []string, size, n int) (latency, error) {
	times := make([]time.Duration, 0, n)
	for i := range n + 100 {
		path := fmt.Sprintf("/v1/events?decider=bench&decider_id=%s", streams[i%len(streams)])
		t0 := time.Now()
		body, err := c.do("GET", path, nil, http.StatusOK)
		if err != nil {
			return latency{}, err
		}
		if i >= 100 { // the first hundred warm up connections and caches
			times = append(times, time.Since(t0))
		}
		if i == 0 && bytes.Count(body, []byte(`"event_id"`)) != size {
			return latency{}, fmt.Errorf("read returned the wrong number of events")
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return latency{p50: times[len(times)/2], p99: times[len(times)*99/100]}, nil
}
