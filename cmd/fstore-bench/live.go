package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/fstore/fstore/internal/store"
)

// Live follows (GET /v1/events as Server-Sent Events), measured on an API
// process of their own over the loaded store, so that its peak RSS is that
// of the live figures.
type liveFigures struct {
	logEvents                  int64
	catchUp, copyRows          float64 // events/s over one SSE connection; rows/s of PostgreSQL's COPY
	idleOpen, idleBusy         int     // connections of the API while 1,000 subscribers wait: open, in use
	latency                    latency // append → frame, 1,000 subscribers, 100 appends/s
	latencyFrames, latencyLost int     // frames timed; subscribers that missed an event or were ended
	appendsNone, appends100    float64 // single appends/s with no subscriber, with 100
	endedSlow                  int     // of the 100, ended as too slow
	rss                        float64 // the live API's peak, MiB
}

const liveAppName = "fstore-bench-live"

func liveBench(ctx context.Context, bin, dbURL string, o options) (liveFigures, error) {
	var f liveFigures
	u, err := url.Parse(dbURL)
	if err != nil {
		return f, err
	}
	q := u.Query()
	q.Set("application_name", liveAppName) // to count its connections
	u.RawQuery = q.Encode()
	api, err := startAPI(ctx, bin, u.String())
	if err != nil {
		return f, err
	}
	defer api.stop()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return f, err
	}
	defer conn.Close(ctx)
	var last int64
	if err := conn.QueryRow(ctx, `SELECT count(*), max("offset") FROM events`).Scan(&f.logEvents, &last); err != nil {
		return f, err
	}

	log.Printf("live: catch-up of %d events over SSE, beside PostgreSQL's COPY of the same rows", f.logEvents)
	for range 2 { // best of two, alternating
		rows, err := copyRate(ctx, conn, f.logEvents)
		if err != nil {
			return f, err
		}
		events, err := catchUpRate(ctx, api.base, last, f.logEvents)
		if err != nil {
			return f, err
		}
		f.copyRows, f.catchUp = max(f.copyRows, rows), max(f.catchUp, events)
	}
	log.Printf("live: catch-up %.0f events/s, COPY %.0f rows/s", f.catchUp, f.copyRows)

	if err := liveSubscribers(ctx, &f, api.base, conn, last); err != nil {
		return f, err
	}
	if err := appendsWhileFollowed(ctx, &f, api.base, conn, o); err != nil {
		return f, err
	}
	f.rss = api.peakRSS()
	return f, nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// copyRate is PostgreSQL's own export of the log as JSON, rows per second.
func copyRate(ctx context.Context, conn *pgx.Conn, rows int64) (float64, error) {
	start := time.Now()
	if _, err := conn.PgConn().CopyTo(ctx, &countingWriter{},
		`COPY (SELECT row_to_json(e) FROM events e ORDER BY "offset") TO STDOUT`); err != nil {
		return 0, err
	}
	return float64(rows) / time.Since(start).Seconds(), nil
}

// catchUpRate follows the whole log from the start over one SSE connection
// until the event at offset last came: events per second.
func catchUpRate(ctx context.Context, base string, last, events int64) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	start := time.Now()
	resp, err := openSSE(ctx, base, 0)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	rd := bufio.NewReaderSize(resp.Body, 1<<20)
	var n int64
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			return 0, fmt.Errorf("catch-up: after %d events: %w", n, err)
		}
		if id, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
			n++
			if parseOffset(id) == last {
				break
			}
		}
	}
	if n != events {
		return 0, fmt.Errorf("catch-up: %d events came, the log holds %d", n, events)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func openSSE(ctx context.Context, base string, after int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1/events?after=%d", base, after), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := sseClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("follow: status %d: %s", resp.StatusCode, body)
	}
	return resp, nil
}

// sseClient keeps one connection per subscriber and no timeout: a follow
// lasts.
var sseClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2000, DisableCompression: true}}

// parseOffset parses the digits of an id line.
func parseOffset(b []byte) int64 {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// liveSubscribers connects 1,000 subscribers at the end of the log, counts
// the API's connections while they wait, then times 100 appends/s to each
// of them.
func liveSubscribers(ctx context.Context, f *liveFigures, base string, conn *pgx.Conn, after int64) error {
	const subscribers, appends = 1000, 1000
	log.Printf("live: %d subscribers waiting, then %d appends at 100/s", subscribers, appends)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sent sync.Map // event_id → time sent
	subs := make([]*liveSub, subscribers)
	for i := range subs {
		resp, err := openSSE(ctx, base, after) //nolint:bodyclose // read closes it
		if err != nil {
			return err
		}
		subs[i] = &liveSub{}
		go subs[i].read(resp, &sent)
	}
	time.Sleep(2 * time.Second) // all caught up, waiting
	for range 20 {
		var open, busy int
		if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state <> 'idle')
			FROM pg_stat_activity WHERE application_name = $1`, liveAppName).Scan(&open, &busy); err != nil {
			return err
		}
		f.idleOpen, f.idleBusy = max(f.idleOpen, open), max(f.idleBusy, busy)
		time.Sleep(100 * time.Millisecond)
	}

	c := newClient(base, 1)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	stream, prev := "", (*uuid.UUID)(nil)
	for i := range appends {
		<-tick.C
		if i%10 == 0 {
			stream, prev = uuid.NewString(), nil
		}
		id := uuid.New()
		sent.Store(id, time.Now())
		if _, err := c.do("POST", "/v1/events", appendEvent(nil, id, stream, i, prev), http.StatusCreated); err != nil {
			return err
		}
		prev = &id
	}
	deadline := time.Now().Add(time.Minute)
	for _, s := range subs {
		for s.count() < appends && !s.ended() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel()
	var all []time.Duration
	for _, s := range subs {
		s.mu.Lock()
		all = append(all, s.lat...)
		if len(s.lat) < appends || s.slow {
			f.latencyLost++
		}
		s.mu.Unlock()
	}
	if len(all) == 0 {
		return fmt.Errorf("live: no frame came")
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	f.latency = latency{p50: all[len(all)/2], p99: all[len(all)*99/100]}
	f.latencyFrames = len(all)
	log.Printf("live: latency p50 %s p99 %s over %d frames; %d subscribers missed events; idle connections open %d, busy %d",
		f.latency.p50, f.latency.p99, len(all), f.latencyLost, f.idleOpen, f.idleBusy)
	return nil
}

// liveSub is one timed subscriber.
type liveSub struct {
	mu   sync.Mutex
	lat  []time.Duration
	slow bool
	done bool
}

func (s *liveSub) count() int    { s.mu.Lock(); defer s.mu.Unlock(); return len(s.lat) }
func (s *liveSub) ended() bool   { s.mu.Lock(); defer s.mu.Unlock(); return s.done }
func (s *liveSub) finish(e bool) { s.mu.Lock(); s.done, s.slow = true, s.slow || e; s.mu.Unlock() }

// read times each frame's event against when it was sent.
func (s *liveSub) read(resp *http.Response, sent *sync.Map) {
	defer resp.Body.Close()
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	key := []byte(`"event_id":"`)
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			s.finish(false)
			return
		}
		if bytes.HasPrefix(line, []byte("event: error")) {
			s.finish(true)
			return
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue
		}
		now := time.Now()
		i := bytes.Index(data, key)
		if i < 0 || len(data) < i+len(key)+36 {
			continue
		}
		id, err := uuid.ParseBytes(data[i+len(key) : i+len(key)+36])
		if err != nil {
			continue
		}
		if t0, ok := sent.Load(id); ok {
			s.mu.Lock()
			s.lat = append(s.lat, now.Sub(t0.(time.Time)))
			s.mu.Unlock()
		}
	}
}

// appendsWhileFollowed measures single appends with no subscriber, then
// with 100 following the whole log, on the same API process.
func appendsWhileFollowed(ctx context.Context, f *liveFigures, base string, conn *pgx.Conn, o options) error {
	c := newClient(base, 2*o.clients)
	var err error
	log.Printf("live: single appends with no subscriber, then with 100")
	if f.appendsNone, err = singleAppends(c, o.clients, 10, o.duration); err != nil {
		return err
	}
	var after int64
	if err := conn.QueryRow(ctx, `SELECT max("offset") FROM events`).Scan(&after); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var slow atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		resp, err := openSSE(ctx, base, after)
		if err != nil {
			return err
		}
		wg.Go(func() {
			if drainFollow(resp) {
				slow.Add(1)
			}
		})
	}
	f.appends100, err = singleAppends(c, o.clients, 10, o.duration)
	cancel()
	wg.Wait()
	f.endedSlow = int(slow.Load())
	log.Printf("live: appends %.0f/s with no subscriber, %.0f/s with 100 (%d ended as too slow)", f.appendsNone, f.appends100, f.endedSlow)
	return err
}

// drainFollow reads a follow cheaply until it ends; true when it was ended as
// too slow.
func drainFollow(resp *http.Response) bool {
	defer resp.Body.Close()
	buf := make([]byte, 256<<10)
	marker := []byte("event: error")
	var tail []byte
	for {
		n, err := resp.Body.Read(buf)
		chunk := append(tail, buf[:n]...)
		if bytes.Contains(chunk, marker) {
			return true
		}
		if len(chunk) >= len(marker) {
			tail = append(tail[:0], chunk[len(chunk)-len(marker)+1:]...)
		} else {
			tail = append(tail[:0], chunk...)
		}
		if err != nil {
			return false
		}
	}
}

// liveRows are the report's rows for live follows.
func (f liveFigures) rows(b *strings.Builder) {
	fmt.Fprintf(b, "| catch-up over one SSE connection, the whole log (%d events) | %.0f events/s | PostgreSQL's `COPY (SELECT row_to_json(e) … ORDER BY offset)` of the same rows: %.0f rows/s → %s | ≥ 0.6×: %s |\n",
		f.logEvents, f.catchUp, f.copyRows, ratio(f.catchUp, f.copyRows), check(f.catchUp >= 0.6*f.copyRows))
	fmt.Fprintf(b, "| append → SSE frame latency, 1,000 live subscribers, 100 appends/s | p50 %s, p99 %s | %d frames; %d subscribers missed an event | p50 ≤ 25 ms: %s, p99 ≤ 100 ms: %s |\n",
		ms(f.latency.p50), ms(f.latency.p99), f.latencyFrames, f.latencyLost,
		check(f.latency.p50 <= 25*time.Millisecond && f.latencyLost == 0), check(f.latency.p99 <= 100*time.Millisecond && f.latencyLost == 0))
	fmt.Fprintf(b, "| database connections of the API while 1,000 subscribers wait | %d open, at most %d busy | the pool's size: %d | ≤ the pool's size: %s |\n",
		f.idleOpen, f.idleBusy, store.DefaultMaxConns, check(f.idleOpen <= store.DefaultMaxConns))
	fmt.Fprintf(b, "| single-event HTTP appends/s with 100 live subscribers following the whole log | %.0f/s | %s of the same with none (%.0f/s); %d ended as too slow | ≥ 0.9×: %s |\n",
		f.appends100, ratio(f.appends100, f.appendsNone), f.appendsNone, f.endedSlow, check(f.appends100 >= 0.9*f.appendsNone))
	fmt.Fprintf(b, "| peak RSS of the API serving the live figures (1,000 subscribers, the catch-up) | %.0f MiB | | < 150 MB: %s |\n",
		f.rss, check(f.rss*1.048576 < 150))
}
