package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// loadPartitions appends partitions × perPartition events of a decider
// through the batch endpoint, 20 streams per request.
func loadPartitions(c *client, partitions, perPartition int, decider string) error {
	const streamsPerRequest = 20
	for p := 0; p < partitions; p += streamsPerRequest {
		buf := []byte(`{"events":[`)
		first := true
		for s := 0; s < streamsPerRequest && p+s < partitions; s++ {
			stream := uuid.NewString()
			var prev *uuid.UUID
			for i := range perPartition {
				if !first {
					buf = append(buf, ',')
				}
				first = false
				id := uuid.New()
				buf = fmt.Appendf(buf, `{"event":"created","event_id":"%s","decider":"%s","decider_id":"%s","data":{"n":%d},"command_id":"%s","previous_id":`,
					id, decider, stream, i, uuid.New())
				if prev == nil {
					buf = append(buf, "null}"...)
				} else {
					buf = fmt.Appendf(buf, `"%s"}`, prev)
				}
				prev = &id
			}
		}
		buf = append(buf, "]}"...)
		if _, err := c.do("POST", "/v1/events/batch", buf, http.StatusCreated); err != nil {
			return err
		}
	}
	return nil
}

type leasedEvent struct {
	DeciderID string `json:"decider_id"`
	Decider   string `json:"decider"`
	Offset    int64  `json:"offset"`
	LeaseID   string `json:"lease_id"`
}

// consume runs consumers that lease (limit 100, max_per_partition 5) and ack
// each partition, 8 acks at a time per consumer, until total events are
// acked. It returns events acked per second.
func consume(c *client, view string, consumers, total int) (float64, error) {
	return consumeWithin(c, view, consumers, total, 5*time.Minute)
}

// consumeWithin is consume, given up after limit.
func consumeWithin(c *client, view string, consumers, total int, limit time.Duration) (float64, error) {
	var acked atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(limit)
	var wg sync.WaitGroup
	for range consumers {
		wg.Go(func() {
			for acked.Load() < int64(total) && time.Now().Before(deadline) {
				body, err := c.do("POST", "/v1/views/"+view+"/stream", []byte(`{"limit":100,"max_per_partition":5}`), http.StatusOK)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				var page struct{ Events []leasedEvent }
				if err := json.Unmarshal(body, &page); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				last := map[string]leasedEvent{}
				count := map[string]int{}
				for _, e := range page.Events {
					last[e.DeciderID] = e
					count[e.DeciderID]++
				}
				sem := make(chan struct{}, 8)
				var acks sync.WaitGroup
				for id, e := range last {
					sem <- struct{}{}
					acks.Go(func() {
						defer func() { <-sem }()
						ack := fmt.Appendf(nil, `{"decider":"%s","decider_id":"%s","offset":%d,"lease_id":"%s"}`, e.Decider, e.DeciderID, e.Offset, e.LeaseID)
						if _, err := c.do("POST", "/v1/views/"+view+"/ack", ack, http.StatusOK); err != nil {
							firstErr.CompareAndSwap(nil, err)
							return
						}
						acked.Add(int64(count[id]))
					})
				}
				acks.Wait()
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	if acked.Load() < int64(total) {
		return 0, fmt.Errorf("%s: consumed %d of %d events in %s", view, acked.Load(), total, limit)
	}
	return float64(acked.Load()) / time.Since(start).Seconds(), nil
}

// seedConsume loads partitions × perPartition events into a seed database
// of their own (the seed's views cover every stream of a database), registers
// a view per run, and runs the seed's stream_events(view, 1) + ack_event
// loop under pgbench, once per entry of clients.
func seedConsume(ctx context.Context, seedDB string, partitions, perPartition int, clients []int, d time.Duration) ([]float64, error) {
	if seedDB == "" {
		return nil, nil
	}
	conn, err := pgx.Connect(ctx, seedDB)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT register_decider_event('consume', 'created', 'benchmark event')`); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
		SELECT 'created', md5('e' || s || '-' || i)::uuid, 'consume', md5('s' || s)::uuid, '{"n": 1}', gen_random_uuid(),
		       CASE WHEN i = 1 THEN NULL ELSE md5('e' || s || '-' || (i - 1))::uuid END
		FROM generate_series(1, %d) i, generate_series(1, %d) s ORDER BY i, s`, perPartition, partitions)); err != nil {
		return nil, fmt.Errorf("seed: load partitions: %w", err)
	}
	var out []float64
	for i, n := range clients {
		view := fmt.Sprintf("consume_%d", i)
		if _, err := conn.Exec(ctx, `SELECT register_view($1, '2000-01-01', 300)`, view); err != nil {
			return nil, err
		}
		script := fmt.Sprintf(`SELECT decider_id AS did, "offset" AS off FROM stream_events('%s', 1, 300) \gset
SELECT 1 FROM ack_event('%s', :did, :off);
`, view, view)
		tps, err := pgbench(ctx, seedDB, script, n, d)
		if err != nil {
			return nil, err
		}
		out = append(out, tps)
	}
	return out, nil
}

// emptyPolls registers a view over the whole loaded store, marks every
// partition caught up (a fixture, in SQL), and times n empty stream calls.
func emptyPolls(ctx context.Context, c *client, dbURL string, n int) (latency, int64, error) {
	if _, err := c.do("PUT", "/v1/views/caught_up", []byte(`{"start_at":"2000-01-01T00:00:00Z"}`), http.StatusCreated); err != nil {
		return latency{}, 0, err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return latency{}, 0, err
	}
	defer conn.Close(ctx)
	var partitions int64
	// Scan the whole log into the view (a window of offsets per call).
	for caughtUp := false; !caughtUp; {
		if _, err := conn.Exec(ctx, `SELECT fstore_discover('caught_up')`); err != nil {
			return latency{}, 0, err
		}
		if err := conn.QueryRow(ctx, `SELECT scanned_offset >= fstore_read_horizon() - 1 FROM views
			WHERE view = 'caught_up'`).Scan(&caughtUp); err != nil {
			return latency{}, 0, err
		}
	}
	if err := conn.QueryRow(ctx, `WITH u AS (UPDATE view_partitions SET acked_offset = head_offset
		WHERE view = 'caught_up' RETURNING 1) SELECT count(*) FROM u`).Scan(&partitions); err != nil {
		return latency{}, 0, err
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE view_partitions`); err != nil {
		return latency{}, 0, err
	}
	times := make([]time.Duration, 0, n)
	for i := range n + 100 {
		t0 := time.Now()
		body, err := c.do("POST", "/v1/views/caught_up/stream", []byte(`{"limit":100}`), http.StatusOK)
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
	return latency{p50: times[len(times)/2], p99: times[len(times)*99/100]}, partitions, nil
}
