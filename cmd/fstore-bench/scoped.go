package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

type scopedFigures struct {
	logEvents, narrow      int64         // the log drained, and the events of its 1% decider
	drainScoped, drainAll  time.Duration // wall time to drain each view
	poll                   latency       // empty poll of a scoped view, 100 scoped views registered
	pollPartitions         int64
	appendsNone, appends10 float64 // single appends/s with no view, with 10 scoped views
	passScoped, passAll    pass    // one discovery pass from the log's beginning
}

// pass is what one discovery pass read, and how long it took.
type pass struct {
	buffers int
	took    time.Duration
}

// Consumer settings of both drains: those of the consume figures.
const drainConsumers = 4

// scopedBench measures scoped views on a log of at least o.scopedLog events,
// appended in SQL where the store is smaller: noise events in streams of 10,
// and, spread evenly among them, a "narrow" decider holding 1% of the whole log.
func scopedBench(ctx context.Context, c *client, dbURL string, o options) (scopedFigures, error) {
	var f scopedFigures
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return f, err
	}
	defer conn.Close(ctx)
	for _, d := range []string{"narrow", "noise"} {
		if err := c.register(d, "created"); err != nil {
			return f, err
		}
	}
	var have int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&have); err != nil {
		return f, err
	}
	add := max(int64(o.scopedLog)-have, 200_000)
	f.narrow = int64(math.Ceil(0.01 * float64(have+add)))
	log.Printf("scoped: appending %d events in SQL (%d of decider narrow, 1%% of the log)", add, f.narrow)
	if err := loadMixed(ctx, conn, int(add), int(f.narrow), "narrow", "noise", "s"); err != nil {
		return f, err
	}
	if _, err := conn.Exec(ctx, `ANALYZE events`); err != nil {
		return f, err
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&f.logEvents); err != nil {
		return f, err
	}

	if f.passScoped, f.passAll, err = discoveryPasses(ctx, c, conn); err != nil {
		return f, err
	}
	log.Printf("scoped: one discovery pass from the start: narrow %d buffers %s, unscoped %d buffers %s",
		f.passScoped.buffers, f.passScoped.took, f.passAll.buffers, f.passAll.took)
	if f.drainScoped, err = drain(c, "drain_narrow", `,"deciders":["narrow"]`, int(f.narrow)); err != nil {
		return f, err
	}
	log.Printf("scoped: drained %d narrow events in %s", f.narrow, f.drainScoped)
	if f.drainAll, err = drain(c, "drain_all", ``, int(f.logEvents)); err != nil {
		return f, err
	}
	log.Printf("scoped: drained the whole log (%d events) in %s", f.logEvents, f.drainAll)

	if f.poll, f.pollPartitions, err = scopedPolls(ctx, c, conn, 2000); err != nil {
		return f, err
	}
	log.Printf("scoped: empty poll over %d partitions: p50 %s", f.pollPartitions, f.poll.p50)

	if f.appendsNone, f.appends10, err = appendsBesideScopedViews(c, o); err != nil {
		return f, err
	}
	log.Printf("scoped: single appends %.0f/s with no view, %.0f/s with 10 scoped views", f.appendsNone, f.appends10)
	return f, nil
}

// loadMixed appends total events in SQL, in streams of 10 events: every
// (total/hits)-th of them, hits in all, of decider hit, the others of miss.
// tag keeps the streams of one call apart from another's.
func loadMixed(ctx context.Context, conn *pgx.Conn, total, hits int, hit, miss, tag string) error {
	step := max(total/max(hits, 1), 1)
	const chunk = 200_000
	for from := 0; from < total; from += chunk {
		to := min(from+chunk, total)
		_, err := conn.Exec(ctx, `
			INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
			SELECT 'created', md5(x.d || $5::text || x.s || '-' || x.i)::uuid, x.d, x.d || '-' || $5::text || x.s,
			       '{"n": 1}', gen_random_uuid(),
			       CASE WHEN x.i = 0 THEN NULL ELSE md5(x.d || $5::text || x.s || '-' || (x.i - 1))::uuid END
			FROM (SELECT z.k, z.d, z.r / 10 AS s, z.r % 10 AS i
			      FROM (SELECT y.k, y.d, y.base + row_number() OVER (PARTITION BY y.d ORDER BY y.k) - 1 AS r
			            FROM (SELECT k, CASE WHEN k % $2 = 0 AND k / $2 < $3 THEN $4::text ELSE $6::text END AS d,
			                         -- the hits before this chunk: its row numbers go on from them
			                         CASE WHEN k % $2 = 0 AND k / $2 < $3 THEN LEAST(($7 + $2 - 1) / $2, $3)
			                              ELSE $7 - LEAST(($7 + $2 - 1) / $2, $3) END AS base
			                  FROM generate_series($7::int, $1::int - 1) k) y) z) x
			ORDER BY x.k`, to, step, hits, hit, tag, miss, from)
		if err != nil {
			return fmt.Errorf("load %s/%s: %w", hit, miss, err)
		}
	}
	return nil
}

// drain registers a view over the whole log (with the given scope) and
// consumes it until total events are acked; it returns the wall time.
func drain(c *client, view, scope string, total int) (time.Duration, error) {
	start := time.Now()
	if _, err := c.do("PUT", "/v1/views/"+view, []byte(`{"start_at":"2000-01-01T00:00:00Z"`+scope+`}`), http.StatusCreated); err != nil {
		return 0, err
	}
	if _, err := consumeWithin(c, view, drainConsumers, total, 30*time.Minute); err != nil {
		return 0, err
	}
	took := time.Since(start)
	_, err := c.do("DELETE", "/v1/views/"+view, nil, http.StatusNoContent)
	return took, err
}

// scopedPolls registers 100 scoped views, discovers every stream of the
// noise and bench deciders (the load's: 100k streams and more) into one of
// them, marks them caught up (a fixture, in SQL), and times n empty stream
// calls of that view.
func scopedPolls(ctx context.Context, c *client, conn *pgx.Conn, n int) (latency, int64, error) {
	for i := range 99 {
		if _, err := c.do("PUT", fmt.Sprintf("/v1/views/scoped_%d", i), []byte(`{"deciders":["narrow"]}`), http.StatusCreated); err != nil {
			return latency{}, 0, err
		}
	}
	if _, err := c.do("PUT", "/v1/views/poll_scoped", []byte(`{"start_at":"2000-01-01T00:00:00Z","deciders":["noise","bench"]}`), http.StatusCreated); err != nil {
		return latency{}, 0, err
	}
	for caughtUp := false; !caughtUp; {
		if _, err := conn.Exec(ctx, `SELECT fstore_discover('poll_scoped')`); err != nil {
			return latency{}, 0, err
		}
		if err := conn.QueryRow(ctx, `SELECT scanned_offset >= fstore_read_horizon() - 1 FROM views
			WHERE view = 'poll_scoped'`).Scan(&caughtUp); err != nil {
			return latency{}, 0, err
		}
	}
	var partitions int64
	if err := conn.QueryRow(ctx, `WITH u AS (UPDATE view_partitions SET acked_offset = head_offset
		WHERE view = 'poll_scoped' RETURNING 1) SELECT count(*) FROM u`).Scan(&partitions); err != nil {
		return latency{}, 0, err
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE view_partitions`); err != nil {
		return latency{}, 0, err
	}
	times := make([]time.Duration, 0, n)
	for i := range n + 100 {
		t0 := time.Now()
		body, err := c.do("POST", "/v1/views/poll_scoped/stream", []byte(`{"limit":100}`), http.StatusOK)
		if err != nil {
			return latency{}, 0, err
		}
		if i >= 100 {
			times = append(times, time.Since(t0))
		}
		if i == 0 && string(body) != "{\"events\":[]}\n" {
			return latency{}, 0, fmt.Errorf("the poll was not empty: %.200s", body)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	for i := range 99 {
		if _, err := c.do("DELETE", fmt.Sprintf("/v1/views/scoped_%d", i), nil, http.StatusNoContent); err != nil {
			return latency{}, 0, err
		}
	}
	if _, err := c.do("DELETE", "/v1/views/poll_scoped", nil, http.StatusNoContent); err != nil {
		return latency{}, 0, err
	}
	return latency{p50: times[len(times)/2], p99: times[len(times)*99/100]}, partitions, nil
}

// discoveryPasses runs the first discovery pass of a view over the narrow
// decider and of an unscoped one, both from the log's beginning, under
// EXPLAIN (ANALYZE, BUFFERS) and rolled back.
func discoveryPasses(ctx context.Context, c *client, conn *pgx.Conn) (pass, pass, error) {
	var out [2]pass
	for i, scope := range []string{`,"deciders":["narrow"]`, ``} {
		// The view's registration runs a pass: a fresh view is measured in SQL instead.
		name := fmt.Sprintf("pass_%d", i)
		if _, err := c.do("PUT", "/v1/views/"+name, []byte(`{"start_at":"2000-01-01T00:00:00Z"`+scope+`}`), http.StatusCreated); err != nil {
			return pass{}, pass{}, err
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return pass{}, pass{}, err
		}
		var plan []byte
		_, err = tx.Exec(ctx, `UPDATE views SET scanned_offset = start_offset WHERE view = $1`, name)
		if err == nil {
			err = tx.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT fstore_discover($1)`, name).Scan(&plan)
		}
		_ = tx.Rollback(ctx)
		if err != nil {
			return pass{}, pass{}, err
		}
		var parsed []struct {
			Plan struct {
				Hit  int `json:"Shared Hit Blocks"`
				Read int `json:"Shared Read Blocks"`
			} `json:"Plan"`
			Time float64 `json:"Execution Time"`
		}
		if err := json.Unmarshal(plan, &parsed); err != nil || len(parsed) == 0 {
			return pass{}, pass{}, fmt.Errorf("discovery plan: %w (%.200s)", err, plan)
		}
		out[i] = pass{parsed[0].Plan.Hit + parsed[0].Plan.Read, time.Duration(parsed[0].Time * float64(time.Millisecond))}
		if _, err := c.do("DELETE", "/v1/views/"+name, nil, http.StatusNoContent); err != nil {
			return pass{}, pass{}, err
		}
	}
	return out[0], out[1], nil
}

// appendsBesideScopedViews measures single appends with no view and with 10
// views scoped to the appended decider, alternating twice (none, 10, none,
// 10): the better run of each counts, so that the drift of a shared machine
// (autovacuum after the section's loads, other work) falls on both.
func appendsBesideScopedViews(c *client, o options) (none, ten float64, err error) {
	for range 2 {
		n, err := singleAppends(c, o.clients, 10, o.duration)
		if err != nil {
			return 0, 0, err
		}
		for i := range 10 {
			body := fmt.Appendf(nil, `{"deciders":["bench"],"events":["created"],"lock_timeout_s":%d}`, 30+i)
			if _, err := c.do("PUT", fmt.Sprintf("/v1/views/scoped_idle_%d", i), body, http.StatusCreated); err != nil {
				return 0, 0, err
			}
		}
		w, err := singleAppends(c, o.clients, 10, o.duration)
		if err != nil {
			return 0, 0, err
		}
		for i := range 10 {
			if _, err := c.do("DELETE", fmt.Sprintf("/v1/views/scoped_idle_%d", i), nil, http.StatusNoContent); err != nil {
				return 0, 0, err
			}
		}
		log.Printf("scoped: single appends %.0f/s with no view, %.0f/s with 10 scoped views", n, w)
		none, ten = max(none, n), max(ten, w)
	}
	return none, ten, nil
}
