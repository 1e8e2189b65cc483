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
// same store, with the benchmark's main API idle.
type traceFigures struct {
	none, off, on float64 // single appends/s
	spans         int     // spans the receiver got while tracing was on
}

func traceBench(ctx context.Context, o options, dbURL string) (traceFigures, error) {
	var f traceFigures
	rcv := otlptest.New()
	defer rcv.Close()
	rcv.Discard()
	runs := []struct {
		bin  string
		env  []string
		rate *float64
	}{
		{o.apiNotrace, nil, &f.none},
		{o.api, nil, &f.off},
		{o.api, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.URL(), "OTEL_BSP_SCHEDULE_DELAY=200"}, &f.on},
	}
	for round := range 2 {
		for _, run := range runs {
			api, err := startAPI(ctx, run.bin, dbURL, run.env...)
			if err != nil {
				return f, err
			}
			c := newClient(api.base, 2*o.clients)
			rate, err := singleAppends(c, o.clients, 10, o.duration/2)
			api.stop()
			if err != nil {
				return f, fmt.Errorf("%s: %w", run.bin, err)
			}
			*run.rate += rate / 2
			log.Printf("trace round %d: %s %v: %.0f appends/s", round+1, run.bin, run.env != nil, rate)
		}
	}
	f.spans = rcv.Count()
	if f.spans == 0 {
		return f, fmt.Errorf("tracing on, but the OTLP receiver got no span")
	}
	return f, nil
}
