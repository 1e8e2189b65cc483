package main

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"
)

// scaleRun is the figures of n API processes and n dispatchers on one
// database.
type scaleRun struct {
	processes  int
	appends    float64 // single-event appends/s over all APIs, 32 clients split between them
	cpu        float64 // CPU µs of the APIs, dispatchers and PostgreSQL per event appended and pushed
	pushed     float64 // events pushed/s in that run, from its first append to its last push
	drain      float64 // pushes/s draining a backlog of 1,000 partitions × 10 events
	misordered int     // partitions whose pushes went back to an earlier offset
	repeats    int     // pushes beyond one per event
}

// scaleBench runs 1 API + 1 dispatcher, then 2 + 2, side by side on the
// loaded store. On a 2-core machine shared with PostgreSQL no gain is
// expected: the point is that more processes stay correct (every event
// pushed once, in order per partition) and cost nothing.
func scaleBench(ctx context.Context, o options, dbURL string) ([2]scaleRun, error) {
	var runs [2]scaleRun
	for i, n := range []int{1, 2} {
		r, err := scaleWith(ctx, o, dbURL, n)
		if err != nil {
			return runs, fmt.Errorf("%d + %d processes: %w", n, n, err)
		}
		log.Printf("%d API + %d dispatcher processes: appends %.0f/s, pushed %.0f/s (%.0f µs CPU per event), drain %.0f/s, %d partitions out of order, %d repeats",
			n, n, r.appends, r.pushed, r.cpu, r.drain, r.misordered, r.repeats)
		runs[i] = r
	}
	return runs, nil
}

func scaleWith(ctx context.Context, o options, dbURL string, n int) (scaleRun, error) {
	r := scaleRun{processes: n}
	rcv, err := newPushReceiver()
	if err != nil {
		return r, err
	}
	defer rcv.close()
	var clients []*client
	var procs []*apiProcess
	for range n {
		api, err := startAPI(ctx, o.api, dbURL)
		if err != nil {
			return r, err
		}
		defer api.stop()
		clients = append(clients, newClient(api.base, 2*o.clients))
		d, err := startDispatcher(ctx, o.dispatcher, dbURL)
		if err != nil {
			return r, err
		}
		defer d.stop()
		procs = append(procs, api, d)
	}
	cpu := newCPUMeter(dbURL, procs...)
	live := fmt.Sprintf("scale_%d_live", n)
	if _, err := clients[0].do("PUT", "/v1/views/"+live, fmt.Appendf(nil, `{"edge_function_url":%q}`, rcv.url), 201); err != nil {
		return r, err
	}
	start, cpu0 := time.Now(), cpu.total()
	appended, elapsed, err := splitAppends(clients, o.clients, o.duration)
	if err != nil {
		return r, err
	}
	r.appends = float64(appended) / elapsed.Seconds()
	if err := rcv.waitDelivered(int(appended), 5*time.Minute); err != nil {
		return r, err
	}
	r.pushed = float64(appended) / time.Since(start).Seconds()
	r.cpu = perOp(cpu.total()-cpu0, appended)
	if _, err := clients[0].do("DELETE", "/v1/views/"+live, nil, 204); err != nil {
		return r, err
	}

	r.misordered, r.repeats = rcv.outOfOrder()

	// A backlog, then a view starting just before it (after everything the
	// live view got, which a receiver of its own would count): n
	// dispatchers drain it.
	drained, err := newPushReceiver()
	if err != nil {
		return r, err
	}
	defer drained.close()
	since := time.Now().UTC().Format(time.RFC3339Nano)
	const partitions, perPartition = 1000, 10
	if err := loadPartitions(clients[0], partitions, perPartition, "push"); err != nil {
		return r, err
	}
	backlog := fmt.Sprintf("scale_%d_backlog", n)
	start = time.Now()
	if _, err := clients[0].do("PUT", "/v1/views/"+backlog, fmt.Appendf(nil, `{"start_at":%q,"edge_function_url":%q}`, since, drained.url), 201); err != nil {
		return r, err
	}
	if err := drained.waitDelivered(partitions*perPartition, 5*time.Minute); err != nil {
		return r, err
	}
	r.drain = float64(partitions*perPartition) / time.Since(start).Seconds()
	misordered, repeats := drained.outOfOrder()
	r.misordered, r.repeats = r.misordered+misordered, r.repeats+repeats
	_, err = clients[0].do("DELETE", "/v1/views/"+backlog, nil, 204)
	return r, err
}

// splitAppends runs the clients split evenly over the API processes, each
// appending single events for d, and returns the total.
func splitAppends(apis []*client, clients int, d time.Duration) (int64, time.Duration, error) {
	var wg sync.WaitGroup
	counts := make([]int64, len(apis))
	errs := make([]error, len(apis))
	start := time.Now()
	for i, c := range apis {
		wg.Go(func() { counts[i], _, errs[i] = countedAppends(c, clients/len(apis), 10, d) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	var total int64
	for i := range apis {
		if errs[i] != nil {
			return 0, 0, errs[i]
		}
		total += counts[i]
	}
	return total, elapsed, nil
}
