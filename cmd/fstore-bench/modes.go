package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"time"
)

// Through PgBouncer in transaction mode, pgx's default query mode
// (cache_statement: named prepared statements) fails. The store uses
// another; these are the candidates, measured side by side through the API.
var queryModes = []string{"cache_statement", "cache_describe", "exec"}

// modeFigures are one query mode's figures.
type modeFigures struct {
	mode        string
	single      float64 // single-event appends/s, 32 clients
	conditional float64 // conditional appends/s (a pipeline of three statements)
	stream      latency // read a 100-event stream
	logPage     latency // read a 100-event page of the log
	// CPU time of the API and PostgreSQL per operation, µs: what the rates
	// cost, which a shared machine's other load moves far less.
	cpuAppend, cpuStream, cpuLog float64
}

// queryModeBench starts an API per mode on the loaded store and measures
// each, twice in turn (ABCABC) so that a drift of the machine does not pass
// for a difference between modes; it keeps each mode's better run.
func queryModeBench(ctx context.Context, o options, dbURL string) ([]modeFigures, error) {
	best := map[string]modeFigures{}
	for round := range 2 {
		for _, mode := range queryModes {
			f, err := measureMode(ctx, o, dbURL, mode)
			if err != nil {
				return nil, fmt.Errorf("query mode %s: %w", mode, err)
			}
			log.Printf("query mode %s (round %d): single %.0f/s (%.0f µs CPU each), conditional %.0f/s, stream read p50 %s (%.0f µs), log page p50 %s (%.0f µs)",
				mode, round+1, f.single, f.cpuAppend, f.conditional, ms(f.stream.p50), f.cpuStream, ms(f.logPage.p50), f.cpuLog)
			best[mode] = better(best[mode], f)
		}
	}
	out := make([]modeFigures, 0, len(queryModes))
	for _, mode := range queryModes {
		out = append(out, best[mode])
	}
	return out, nil
}

func better(a, b modeFigures) modeFigures {
	if a.mode == "" {
		return b
	}
	a.single, a.conditional = max(a.single, b.single), max(a.conditional, b.conditional)
	a.cpuAppend, a.cpuStream, a.cpuLog = min(a.cpuAppend, b.cpuAppend), min(a.cpuStream, b.cpuStream), min(a.cpuLog, b.cpuLog)
	if b.stream.p50 < a.stream.p50 {
		a.stream = b.stream
	}
	if b.logPage.p50 < a.logPage.p50 {
		a.logPage = b.logPage
	}
	return a
}

func measureMode(ctx context.Context, o options, dbURL, mode string) (modeFigures, error) {
	f := modeFigures{mode: mode}
	api, err := startAPI(ctx, o.api, withParam(dbURL, "default_query_exec_mode", mode))
	if err != nil {
		return f, err
	}
	defer api.stop()
	c := newClient(api.base, 2*o.clients)
	for _, e := range []string{"copy_lent", "copy_returned"} {
		if _, err := c.status("POST", "/v1/deciders/library/events", []byte(`{"event":"`+e+`"}`)); err != nil {
			return f, err
		}
	}
	d := o.duration / 2
	cpu := newCPUMeter(dbURL, api)
	t0 := cpu.total()
	n, elapsed, err := countedAppends(c, o.clients, 10, d)
	if err != nil {
		return f, err
	}
	f.single, f.cpuAppend = float64(n)/elapsed.Seconds(), perOp(cpu.total()-t0, n)
	if f.conditional, err = conditionalAppends(c, o.clients, d); err != nil {
		return f, err
	}
	streams, err := storeStreams(c, 100)
	if err != nil {
		return f, err
	}
	const reads = 2000
	t0 = cpu.total()
	if f.stream, err = readStreams(c, streams, 100, reads); err != nil {
		return f, err
	}
	f.cpuStream = perOp(cpu.total()-t0, reads+100)
	t0 = cpu.total()
	f.logPage, err = logPageLatency(c, reads)
	f.cpuLog = perOp(cpu.total()-t0, reads+100)
	return f, err
}

// logPageLatency reads 100-event pages of the log at random places, one
// request at a time: the read horizon's function and a range scan.
func logPageLatency(c *client, n int) (latency, error) {
	rng := rand.New(rand.NewPCG(7, 8))
	times := make([]time.Duration, 0, n)
	for i := range n + 100 {
		t0 := time.Now()
		if _, err := c.do("GET", fmt.Sprintf("/v1/events?after=%d&limit=100", rng.IntN(100_000)), nil, http.StatusOK); err != nil {
			return latency{}, err
		}
		if i >= 100 {
			times = append(times, time.Since(t0))
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return latency{p50: times[len(times)/2], p99: times[len(times)*99/100]}, nil
}

// withParam returns dbURL with a query parameter set.
func withParam(dbURL, key, value string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}
