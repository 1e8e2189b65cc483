package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The book-lending decision of docs/dcb.md, measured on the loaded store.
const (
	libCopies  = 10_000
	libReaders = 2_000
	libLoans   = 50_000
)

type dcbFigures struct {
	storeEvents    int64
	query          latency // the lending decision's query, one client
	conditional    float64 // conditional appends/s, each client on copies of its own
	decisions      float64 // query + conditional append, random copies
	decisionsLost  float64 // share of those refused by their condition
	contended      float64 // the same over 16 copies only
	contendedLost  float64
	withIndexes    float64 // single appends at the end of the run, DCB indexes present
	withoutIndexes float64 // the same with them dropped
	batchWith      float64 // batch appends (events/s) at the end of the run, indexes present
	batchWithout   float64 // the same with them dropped
	plan           string
}

// lendingQuery is what deciding to lend copy to reader depends on: the
// copy's events, and the reader's loans and returns.
func lendingQuery(copyID, readerID string) string {
	return fmt.Sprintf(`{"items":[{"types":["copy_added","copy_lent","copy_returned"],"matches":[{"copy_id":%q}]},`+
		`{"types":["copy_lent","copy_returned"],"matches":[{"reader_id":%q}]}]}`, copyID, readerID)
}

func copyQuery(copyID string) string {
	return fmt.Sprintf(`{"items":[{"types":["copy_lent","copy_returned"],"matches":[{"copy_id":%q}]}]}`, copyID)
}

func lendEvent(buf []byte, copyID, readerID string) []byte {
	return fmt.Appendf(buf, `{"event":"copy_lent","event_id":"%s","decider":"library","decider_id":"loan-%s","data":{"copy_id":%q,"reader_id":%q},"command_id":"%s","previous_id":null}`,
		uuid.New(), uuid.New(), copyID, readerID, uuid.New())
}

func dcbBench(ctx context.Context, c *client, dbURL string, o options) (dcbFigures, error) {
	var f dcbFigures
	for _, e := range []string{"copy_added", "copy_lent", "copy_returned"} {
		if err := c.register("library", e); err != nil {
			return f, err
		}
	}
	if err := loadLibrary(c); err != nil {
		return f, err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return f, err
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&f.storeEvents); err != nil {
		return f, err
	}
	if f.plan, err = queryPlan(ctx, conn, lendingQuery("c-4242", "r-77")); err != nil {
		return f, err
	}
	if f.query, err = queryLatency(c, 3000); err != nil {
		return f, err
	}
	if f.conditional, err = conditionalAppends(c, o.clients, o.duration); err != nil {
		return f, err
	}
	if f.decisions, f.decisionsLost, err = decide(c, o.clients, libCopies, o.duration); err != nil {
		return f, err
	}
	if f.contended, f.contendedLost, err = decide(c, 16, 16, o.duration); err != nil {
		return f, err
	}
	// What the two indexes cost the plain append paths, on the same store.
	if f.withIndexes, err = singleAppends(c, o.clients, 10, o.duration); err != nil {
		return f, err
	}
	if f.batchWith, err = batchLoad(c, 200_000, 100, 8); err != nil {
		return f, err
	}
	if _, err := conn.Exec(ctx, `DROP INDEX events_data_idx; DROP INDEX events_event_idx`); err != nil {
		return f, err
	}
	if f.withoutIndexes, err = singleAppends(c, o.clients, 10, o.duration); err != nil {
		return f, err
	}
	if f.batchWithout, err = batchLoad(c, 200_000, 100, 8); err != nil {
		return f, err
	}
	return f, nil
}

// loadLibrary adds copies, then loans of random copies to random readers.
func loadLibrary(c *client) error {
	var buf []byte
	flush := func(n int) error {
		if n == 0 {
			return nil
		}
		buf = append(buf, "]}"...)
		_, err := c.do("POST", "/v1/events/batch", buf, http.StatusCreated)
		return err
	}
	n := 0
	start := func() { buf, n = append(buf[:0], `{"events":[`...), 0 }
	start()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range libCopies + libLoans {
		if n > 0 {
			buf = append(buf, ',')
		}
		if i < libCopies {
			buf = fmt.Appendf(buf, `{"event":"copy_added","event_id":"%s","decider":"library","decider_id":"copy-%d","data":{"copy_id":"c-%d","title":"a title"},"command_id":"%s","previous_id":null}`,
				uuid.New(), i, i, uuid.New())
		} else {
			buf = lendEvent(buf, fmt.Sprintf("c-%d", rng.IntN(libCopies)), fmt.Sprintf("r-%d", rng.IntN(libReaders)))
		}
		if n++; n == 100 {
			if err := flush(n); err != nil {
				return err
			}
			start()
		}
	}
	return flush(n)
}

// queryPlan explains the query's SQL as query_events runs it for a query
// whose every item has matches.
func queryPlan(ctx context.Context, conn *pgx.Conn, query string) (string, error) {
	var expr string
	var position int64
	if err := conn.QueryRow(ctx, `SELECT fstore_query_sql($1), query_position()`, query).Scan(&expr, &position); err != nil {
		return "", err
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM events e
		WHERE (e."offset" <= %d) IS TRUE AND %s ORDER BY e."offset" + 0 LIMIT 1000`, position, expr))
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return strings.Join(lines, "\n"), err
}

// queryLatency runs the lending query for random copies and readers, one
// request at a time.
func queryLatency(c *client, n int) (latency, error) {
	rng := rand.New(rand.NewPCG(3, 4))
	times := make([]time.Duration, 0, n)
	for i := range n + 100 {
		body := fmt.Appendf(nil, `{"query":%s}`, lendingQuery(fmt.Sprintf("c-%d", rng.IntN(libCopies)), fmt.Sprintf("r-%d", rng.IntN(libReaders))))
		t0 := time.Now()
		out, err := c.do("POST", "/v1/events/query", body, http.StatusOK)
		if err != nil {
			return latency{}, err
		}
		if i >= 100 {
			times = append(times, time.Since(t0))
		}
		if i == 0 && !bytes.Contains(out, []byte(`"copy_added"`)) {
			return latency{}, fmt.Errorf("the lending query missed the copy: %s", out)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return latency{p50: times[len(times)/2], p99: times[len(times)*99/100]}, nil
}

// conditionalAppends has each client lend copies of its own, each on the
// condition that nothing happened to the copy since its last loan: every
// append is conditional and succeeds.
func conditionalAppends(c *client, clients int, d time.Duration) (float64, error) {
	var count atomic.Int64
	var firstErr atomic.Value
	run := uuid.NewString()[:8] // copies of this run's own: the function runs more than once per store
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			last := map[string]int64{}
			buf := make([]byte, 0, 1024)
			for i := 0; time.Now().Before(deadline); i++ {
				copyID := fmt.Sprintf("own-%s-%d-%d", run, w, i%100)
				buf = append(buf[:0], `{"events":[`...)
				buf = lendEvent(buf, copyID, fmt.Sprintf("r-%d", i%libReaders))
				buf = fmt.Appendf(buf, `],"condition":{"query":%s,"after":%d}}`, copyQuery(copyID), last[copyID])
				out, err := c.do("POST", "/v1/events/batch", buf, http.StatusCreated)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				var res struct {
					Events []struct {
						Offset int64 `json:"offset"`
					} `json:"events"`
				}
				if err := json.Unmarshal(out, &res); err != nil || len(res.Events) != 1 {
					firstErr.CompareAndSwap(nil, fmt.Errorf("conditional append: %s", out))
					return
				}
				last[copyID] = res.Events[0].Offset
				count.Add(1)
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return float64(count.Load()) / time.Since(start).Seconds(), nil
}

// decide runs whole decisions: read the lending query of a random copy and
// reader, then lend on its position. It returns successful decisions/s and
// the share refused by their condition (another decision got there first).
func decide(c *client, clients, copies int, d time.Duration) (float64, float64, error) {
	var won, lost atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 5))
			buf := make([]byte, 0, 1024)
			for time.Now().Before(deadline) {
				copyID, readerID := fmt.Sprintf("c-%d", rng.IntN(copies)), fmt.Sprintf("r-%d", rng.IntN(libReaders))
				q := lendingQuery(copyID, readerID)
				out, err := c.do("POST", "/v1/events/query", fmt.Appendf(nil, `{"query":%s}`, q), http.StatusOK)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				var read struct {
					Position int64 `json:"position"`
				}
				if err := json.Unmarshal(out, &read); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				buf = append(buf[:0], `{"events":[`...)
				buf = lendEvent(buf, copyID, readerID)
				buf = fmt.Appendf(buf, `],"condition":{"query":%s,"after":%d}}`, q, read.Position)
				status, err := c.status("POST", "/v1/events/batch", buf)
				switch {
				case err != nil:
					firstErr.CompareAndSwap(nil, err)
					return
				case status == http.StatusCreated:
					won.Add(1)
				case status == http.StatusConflict:
					lost.Add(1)
				default:
					firstErr.CompareAndSwap(nil, fmt.Errorf("conditional append: status %d", status))
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, 0, err
	}
	total := won.Load() + lost.Load()
	return float64(won.Load()) / time.Since(start).Seconds(), float64(lost.Load()) / float64(max(total, 1)), nil
}
