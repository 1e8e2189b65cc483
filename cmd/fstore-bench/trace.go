package main

import (
	"context"
	"fmt"
	"log"

	"github.com/fstore/fstore/internal/otlptest"
)

// What tracing costs single appends: a build without it (-tags
// fstore_notrace), the usual build with no OTEL_* variables (tracing off),
// and the usual build exporting every span (a request's and its store
// call's) to a local OTLP/HTTP receiver. Each runs twice, in turn, on the
// same store, with the benchmark's main API idle. Beside each rate, the CPU
// of its API and of PostgreSQL per append, which other load on a shared
// machine moves far less.
type traceFigures struct {
	none, off, on          float64 // single appends/s
	cpuNone, cpuOff, cpuOn float64 // µs of CPU (API + PostgreSQL) per append
	spans                  int     // spans the receiver got while tracing was on
}

func traceBench(ctx context.Context, o options, dbURL string) (traceFigures, error) {
	var f traceFigures
	rcv := otlptest.New()
	defer rcv.Close()
	rcv.Discard()
	runs := []struct {
		bin       string
		env       []string
		rate, cpu *float64
	}{
		{o.apiNotrace, nil, &f.none, &f.cpuNone},
		{o.api, nil, &f.off, &f.cpuOff},
		{o.api, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.URL(), "OTEL_BSP_SCHEDULE_DELAY=200"}, &f.on, &f.cpuOn},
	}
	for round := range 2 {
		for _, run := range runs {
			api, err := startAPI(ctx, run.bin, dbURL, run.env...)
			if err != nil {
				return f, err
			}
			c := newClient(api.base, 2*o.clients)
			cpu := newCPUMeter(dbURL, api)
			t0 := cpu.total()
			n, elapsed, err := countedAppends(c, o.clients, 10, o.duration/2)
			used := cpu.total() - t0 // before the API and its connections end
			api.stop()
			if err != nil {
				return f, fmt.Errorf("%s: %w", run.bin, err)
			}
			rate := float64(n) / elapsed.Seconds()
			*run.rate, *run.cpu = *run.rate+rate/2, *run.cpu+perOp(used, n)/2
			log.Printf("trace round %d: %s %v: %.0f appends/s, %.0f µs CPU each", round+1, run.bin, run.env != nil, rate, perOp(used, n))
		}
	}
	f.spans = rcv.Count()
	if f.spans == 0 {
		return f, fmt.Errorf("tracing on, but the OTLP receiver got no span")
	}
	return f, nil
}
