package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The book-lending decision of docs/dcb.md, measured on the loaded store.
const (
	libCopies  = 10_000
	libReaders = 2_000
	libLoans   = 50_000
)

type dcbFigures struct {
	storeEvents    int64   // events in the store when the queries are measured
	taggedBatch    float64 // batch appends (events/s) with 3 tags and metadata on every event
	taggedEvents   int     // how many were appended so
	plainInsert    float64 // the same rows inserted by PostgreSQL alone into a table without indexes
	tagQuery       latency // the lending decision's query with tags, one client
	query          latency // the same with matches on data
	single         float64 // single appends/s, measured beside the conditional ones
	conditional    float64 // conditional appends/s, each client on copies of its own
	decisions      float64 // query + conditional append, random copies
	decisionsLost  float64 // share of those refused by their condition
	contended      float64 // the same over 16 copies only
	contendedLost  float64
	singlePlain    float64 // single appends without tags or metadata, beside…
	singleTagged   float64 // …the same with 3 tags and 200 bytes of metadata
	withIndexes    float64 // single appends at the end of the run, DCB indexes present
	withoutIndexes float64 // the same with them dropped
	batchWith      float64 // batch appends (events/s) at the end of the run, indexes present
	batchWithout   float64 // the same with them dropped
	plan, tagPlan  string
}

// lendingQuery is what deciding to lend copy to reader depends on: the
// copy's events, and the reader's loans and returns, by matches on data.
func lendingQuery(copyID, readerID string) string {
	return fmt.Sprintf(`{"items":[{"types":["copy_added","copy_lent","copy_returned"],"matches":[{"copy_id":%q}]},`+
		`{"types":["copy_lent","copy_returned"],"matches":[{"reader_id":%q}]}]}`, copyID, readerID)
}

// lendingTagQuery is lendingQuery by tags, as the DCB specification queries.
func lendingTagQuery(copyID, readerID string) string {
	return fmt.Sprintf(`{"items":[{"types":["copy_added","copy_lent","copy_returned"],"tags":["copy:%s"]},`+
		`{"types":["copy_lent","copy_returned"],"tags":["reader:%s"]}]}`, copyID, readerID)
}

func copyQuery(copyID string) string {
	return fmt.Sprintf(`{"items":[{"types":["copy_lent","copy_returned"],"tags":["copy:%s"]}]}`, copyID)
}

func lendEvent(buf []byte, copyID, readerID string) []byte {
	return fmt.Appendf(buf, `{"event":"copy_lent","event_id":"%s","decider":"library","decider_id":"loan-%s","data":{"copy_id":%q,"reader_id":%q},"tags":["copy:%s","reader:%s"],"command_id":"%s","previous_id":null}`,
		uuid.New(), uuid.New(), copyID, readerID, copyID, readerID, uuid.New())
}

func dcbBench(ctx context.Context, c *client, dbURL string, o options) (dcbFigures, error) {
	var f dcbFigures
	for _, e := range []string{"copy_added", "copy_lent", "copy_returned"} {
		if err := c.register("library", e); err != nil {
			return f, err
		}
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return f, err
	}
	defer conn.Close(ctx)
	if err := taggedBatches(ctx, c, conn, dbURL, o, &f); err != nil {
		return f, err
	}
	if err := loadLibrary(c); err != nil {
		return f, err
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&f.storeEvents); err != nil {
		return f, err
	}
	if f.plan, err = queryPlan(ctx, conn, lendingQuery("c-4242", "r-77")); err != nil {
		return f, err
	}
	if f.tagPlan, err = tagQueryPlan(ctx, dbURL, lendingTagQuery("c-4242", "r-77")); err != nil {
		return f, err
	}
	if f.tagQuery, err = queryLatency(c, 3000, lendingTagQuery); err != nil {
		return f, err
	}
	if f.query, err = queryLatency(c, 3000, lendingQuery); err != nil {
		return f, err
	}
	if err := decisionFigures(c, o, &f); err != nil {
		return f, err
	}
	for range 2 { // side by side, twice, against the noise of a shared machine
		plain, err := singleAppends(c, o.clients, 10, o.duration/2)
		if err != nil {
			return f, err
		}
		tagged, err := singleTagged(c, o.clients, 10, o.duration/2)
		if err != nil {
			return f, err
		}
		f.singlePlain, f.singleTagged = f.singlePlain+plain/2, f.singleTagged+tagged/2
	}
	return f, indexCost(ctx, c, conn, o, &f)
}

// taggedBatches appends tagged events through the batch endpoint (enough
// to bring the store to o.dcbStore events, at least 200,000), then inserts
// as many of the same rows with PostgreSQL alone.
func taggedBatches(ctx context.Context, c *client, conn *pgx.Conn, dbURL string, o options, f *dcbFigures) error {
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		return err
	}
	f.taggedEvents = max(200_000, (o.dcbStore-n-libCopies-libLoans+99)/100*100)
	var err error
	if f.taggedBatch, err = taggedBatchLoad(c, f.taggedEvents, 100, 8); err != nil {
		return err
	}
	f.plainInsert, err = plainInsert(ctx, dbURL, min(f.taggedEvents, 400_000), 100, 8)
	return err
}

// decisionFigures measures single appends, then conditional appends and
// whole decisions on the loaded library.
func decisionFigures(c *client, o options, f *dcbFigures) error {
	var err error
	if f.single, err = singleAppends(c, o.clients, 10, o.duration); err != nil {
		return err
	}
	if f.conditional, err = conditionalAppends(c, o.clients, o.duration); err != nil {
		return err
	}
	if f.decisions, f.decisionsLost, err = decide(c, o.clients, libCopies, o.duration); err != nil {
		return err
	}
	f.contended, f.contendedLost, err = decide(c, 16, 16, o.duration)
	return err
}

// queryIndexes are the query indexes of 0003 and 0007, as they define
// them: indexCost drops them and builds them again.
var queryIndexes = []string{
	`CREATE INDEX events_event_idx ON events (event, "offset")`,
	`CREATE INDEX events_data_idx ON events USING gin (data jsonb_path_ops) WITH (gin_pending_list_limit = 64)`,
	`CREATE INDEX events_tags_idx ON events USING gin (tags) WITH (gin_pending_list_limit = 64) WHERE tags <> '{}'`,
}

// indexCost measures what the query indexes cost the plain append paths, on
// the same store, with them and after dropping them; then it builds them
// again, for the sections after it (their queries would read the whole log).
func indexCost(ctx context.Context, c *client, conn *pgx.Conn, o options, f *dcbFigures) error {
	if err := indexCostWithout(ctx, c, conn, o, f); err != nil {
		return err
	}
	log.Printf("dcb: building the query indexes again")
	for _, ddl := range queryIndexes {
		if _, err := conn.Exec(ctx, ddl); err != nil {
			return fmt.Errorf("dcb: %s: %w", ddl, err)
		}
	}
	_, err := conn.Exec(ctx, `ANALYZE events`)
	return err
}

func indexCostWithout(ctx context.Context, c *client, conn *pgx.Conn, o options, f *dcbFigures) error {
	var err error
	if f.withIndexes, err = singleAppends(c, o.clients, 10, o.duration); err != nil {
		return err
	}
	if f.batchWith, err = batchLoad(c, 200_000, 100, 8); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `DROP INDEX events_data_idx; DROP INDEX events_event_idx; DROP INDEX events_tags_idx`); err != nil {
		return err
	}
	if f.withoutIndexes, err = singleAppends(c, o.clients, 10, o.duration); err != nil {
		return err
	}
	f.batchWithout, err = batchLoad(c, 200_000, 100, 8)
	return err
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
			buf = fmt.Appendf(buf, `{"event":"copy_added","event_id":"%s","decider":"library","decider_id":"copy-%d","data":{"copy_id":"c-%d","title":"a title"},"tags":["copy:c-%d"],"command_id":"%s","previous_id":null}`,
				uuid.New(), i, i, i, uuid.New())
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

// tagQueryPlan returns the plan fstore_tag_events runs for a tag query (its
// generic plan, made once per connection), as auto_explain logs it.
func tagQueryPlan(ctx context.Context, dbURL, query string) (string, error) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return "", err
	}
	var plans []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { plans = append(plans, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
		SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; SET auto_explain.log_timing = on;
		SET auto_explain.log_nested_statements = on; SET client_min_messages = log`); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `SELECT count(*) FROM query_events($1)`, query); err != nil {
		return "", err
	}
	for _, p := range plans {
		if strings.Contains(p, "FROM events e") && strings.Contains(p, "e.tags &&") {
			return strings.TrimSpace(p), nil
		}
	}
	return "", fmt.Errorf("auto_explain logged no plan of fstore_tag_events (%d plans)", len(plans))
}

// queryLatency runs a lending query for random copies and readers, one
// request at a time.
func queryLatency(c *client, n int, lending func(copyID, readerID string) string) (latency, error) {
	rng := rand.New(rand.NewPCG(3, 4))
	times := make([]time.Duration, 0, n)
	for i := range n + 100 {
		body := fmt.Appendf(nil, `{"query":%s}`, lending(fmt.Sprintf("c-%d", rng.IntN(libCopies)), fmt.Sprintf("r-%d", rng.IntN(libReaders))))
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

// positionOf returns the "position" of a query's answer, the last member
// of its object.
func positionOf(answer []byte) (int64, error) {
	i := bytes.LastIndex(answer, []byte(`"position":`))
	if i < 0 {
		return 0, fmt.Errorf("no position in %.200s", answer)
	}
	digits := bytes.TrimRight(answer[i+len(`"position":`):], "}\n ")
	return strconv.ParseInt(string(digits), 10, 64)
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
				q := lendingTagQuery(copyID, readerID)
				out, err := c.do("POST", "/v1/events/query", fmt.Appendf(nil, `{"query":%s}`, q), http.StatusOK)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				// The position only: decoding the whole answer would make the
				// load generator the bottleneck on a shared machine.
				position, err := positionOf(out)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				buf = append(buf[:0], `{"events":[`...)
				buf = lendEvent(buf, copyID, readerID)
				buf = fmt.Appendf(buf, `],"condition":{"query":%s,"after":%d}}`, q, position)
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
