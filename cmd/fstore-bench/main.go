// Command fstore-bench measures fstore on this machine and writes the
// figures to docs/benchmarks.md and README.md. It expects DATABASE_URL to
// name a PostgreSQL where it may create databases (scripts/bench.sh starts a
// throwaway one), starts the real API binary, and measures the seed's SQL
// (fstore-sql) in the same cluster with pgbench, so the comparison is side
// by side. Run it with 'make bench'.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

type options struct {
	api, apiNotrace, dispatcher, seed, out, readme string
	events                                         int           // events loaded through the batch endpoint
	duration                                       time.Duration // each throughput run
	growTo                                         int           // events per stream in the growing-streams run
	clients                                        int           // concurrent clients for single appends
	dcbStore                                       int           // events in the store before the DCB figures (at least)
	only                                           []string      // run only these sections (after the load); empty: all
	scopedLog                                      int           // events the scoped section's log holds at least
}

// want reports whether a section runs: every section when -only is empty.
func (o options) want(section string) bool {
	return len(o.only) == 0 || slices.Contains(o.only, section)
}

func main() {
	var o options
	flag.StringVar(&o.api, "api", "bin/fstore-api", "the API binary")
	flag.StringVar(&o.apiNotrace, "api-notrace", "bin/fstore-api-notrace", "the API built without tracing (-tags fstore_notrace)")
	flag.StringVar(&o.dispatcher, "dispatcher", "bin/fstore-dispatcher", "the dispatcher binary")
	flag.StringVar(&o.seed, "seed", "", "fstore-sql's schema.sql; empty or missing skips the seed's figures")
	flag.StringVar(&o.out, "out", "", "write the report to this file (docs/benchmarks.md)")
	flag.StringVar(&o.readme, "readme", "", "update the figures between the bench markers of this README")
	flag.IntVar(&o.events, "events", 1_000_000, "events to load through the batch endpoint")
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "length of each throughput run")
	flag.IntVar(&o.growTo, "grow", 10_000, "events per stream in the growing-streams run")
	flag.IntVar(&o.clients, "clients", 32, "concurrent clients for single appends")
	flag.IntVar(&o.scopedLog, "scoped-log", 2_000_000, "events the scoped views' log holds at least (appended in SQL when the store is smaller)")
	flag.IntVar(&o.dcbStore, "dcb-store", 2_000_000, "tagged batches bring the store to this many events before the DCB figures")
	only := flag.String("only", "", "comma-separated sections to run after the load, for development: "+
		"single, views, seed, grow, read, consume, poll, push, hooks, scoped, live, dcb, scale, querymode, pooler, standby, trace, console (default: all; with -only, skip -out and -readme)")
	flag.Parse()
	if *only != "" {
		o.only = strings.Split(*only, ",")
	}
	log.SetFlags(log.Ltime)
	// The load generator shares the machine with what it measures: batch
	// the random reads behind its UUIDs instead of one syscall each.
	uuid.EnableRandPool()
	if err := run(context.Background(), o); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, o options) error {
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		return errors.New("DATABASE_URL is not set: run 'make bench'")
	}
	fstoreDB, err := createDatabase(ctx, admin, "bench_fstore")
	if err != nil {
		return err
	}
	var r report
	r.machine = describeMachine(ctx, admin)
	r.opts = o

	api, err := startAPI(ctx, o.api, fstoreDB)
	if err != nil {
		return err
	}
	defer api.stop()
	c := newClient(api.base, 2*o.clients)
	for _, decider := range []string{"bench", "consume", "push"} {
		if err := c.register(decider, "created"); err != nil {
			return err
		}
	}

	log.Printf("loading %d events through POST /v1/events/batch (100 per request, 8 clients)", o.events)
	if r.batch, err = batchLoad(c, o.events, 100, 8); err != nil {
		return err
	}
	log.Printf("batch: %.0f events/s", r.batch)

	if o.want("single") {
		log.Printf("single appends: %d clients, a new stream every 10 events, %s", o.clients, o.duration)
		if r.single, err = singleAppends(c, o.clients, 10, o.duration); err != nil {
			return err
		}
		log.Printf("single: %.0f appends/s", r.single)
	}

	if o.want("views") {
		log.Printf("single appends with 10 views registered")
		for i := range 10 {
			if _, err := c.do("PUT", fmt.Sprintf("/v1/views/idle_%d", i), []byte(`{}`), 201); err != nil {
				return err
			}
		}
		if r.singleViews, err = singleAppends(c, o.clients, 10, o.duration); err != nil {
			return err
		}
		for i := range 10 {
			if _, err := c.do("DELETE", fmt.Sprintf("/v1/views/idle_%d", i), nil, 204); err != nil {
				return err
			}
		}
		log.Printf("single with 10 views: %.0f appends/s", r.singleViews)
	}

	if o.want("seed") {
		if r.seedSingle, r.seedNote, err = seedAppends(ctx, admin, o); err != nil {
			return err
		}
		if r.ourSQL, err = pgbench(ctx, fstoreDB, ourScript, o.clients, o.duration); err != nil {
			return err
		}
		log.Printf("append_event via pgbench: seed %.0f/s, fstore %.0f/s", r.seedSingle, r.ourSQL)
	}

	if o.want("grow") {
		log.Printf("growing streams: %d clients to %d events each", o.clients, o.growTo)
		if r.grow, err = growingStreams(c, o.clients, o.growTo); err != nil {
			return err
		}
		log.Printf("growing: first thousand %.0f/s, last thousand %.0f/s", r.grow.first, r.grow.last)
	}

	if o.want("read") {
		log.Printf("reading a 100-event stream")
		if r.read, err = readLatency(c, 100, 3000); err != nil {
			return err
		}
		log.Printf("read: p50 %s p99 %s", r.read.p50, r.read.p99)
	}

	if o.want("consume") {
		const partitions, perPartition = 10_000, 5
		log.Printf("consuming %d partitions × %d events over HTTP", partitions, perPartition)
		for _, v := range []string{"consume_1", "consume_8"} {
			if _, err := c.do("PUT", "/v1/views/"+v, []byte(`{}`), 201); err != nil {
				return err
			}
		}
		if err := loadPartitions(c, partitions, perPartition, "consume"); err != nil {
			return err
		}
		if r.consume1, err = consume(c, "consume_1", 1, partitions*perPartition); err != nil {
			return err
		}
		if r.consume8, err = consume(c, "consume_8", 8, partitions*perPartition); err != nil {
			return err
		}
		log.Printf("consume: 1 consumer %.0f/s, 8 consumers %.0f/s", r.consume1, r.consume8)
		if err := dropViews(c, "consume_1", "consume_8"); err != nil {
			return err
		}
		seedDB, err := seedDatabase(ctx, admin, "bench_seed_consume", o.seed)
		if err != nil {
			return err
		}
		if seeds, err := seedConsume(ctx, seedDB, partitions, perPartition, []int{1, 8}, o.duration); err != nil {
			return err
		} else if len(seeds) == 2 {
			r.seedConsume1, r.seedConsume8 = seeds[0], seeds[1]
		}
		log.Printf("seed consume: 1 client %.0f/s, 8 clients %.0f/s", r.seedConsume1, r.seedConsume8)
	}

	if o.want("poll") {
		log.Printf("empty polls over every stream of the store, caught up")
		if r.emptyPoll, r.caughtUp, err = emptyPolls(ctx, c, fstoreDB, 2000); err != nil {
			return err
		}
		log.Printf("empty poll over %d partitions: p50 %s p99 %s", r.caughtUp, r.emptyPoll.p50, r.emptyPoll.p99)
		if err := dropViews(c, "caught_up"); err != nil {
			return err
		}
	}

	if o.want("push") {
		log.Printf("push: 1,000 partitions × 10 events of backlog, then 100 appends/s, then appends while pushing")
		if r.push, err = pushBench(ctx, c, o.dispatcher, fstoreDB, o, 1000, 10); err != nil {
			return err
		}
		log.Printf("push: %.0f deliveries/s; latency p50 %s p99 %s; appends while pushing %.0f/s",
			r.push.deliveries, r.push.latency.p50, r.push.latency.p99, r.push.appendsWhile)
	}

	if o.want("scoped") {
		log.Printf("scoped views: drain a 1%% decider from the log's beginning, empty polls, appends with 10 scoped views")
		if r.scoped, err = scopedBench(ctx, c, fstoreDB, o); err != nil {
			return err
		}
	}

	// After scoped, which brings the log to 2M events: issue 11 measures
	// its pushes on a store of that size.
	if o.want("hooks") {
		log.Printf("hooks: pushes/s of a scoped view where 10%% of events match, of an unscoped one, and without attempt recording")
		if r.hooks, err = hookBench(ctx, c, o.dispatcher, fstoreDB); err != nil {
			return err
		}
	}

	if o.want("live") {
		log.Printf("live follows: catch-up, 1,000 subscribers, appends while followed")
		if r.live, err = liveBench(ctx, o.api, fstoreDB, o); err != nil {
			return err
		}
	}

	if o.want("dcb") {
		log.Printf("dynamic consistency boundaries: the book-lending decision")
		if r.dcb, err = dcbBench(ctx, c, fstoreDB, o); err != nil {
			return err
		}
		d := r.dcb
		log.Printf("dcb: tagged batches %.0f events/s (plain INSERT %.0f rows/s); tag query p50 %s p99 %s, matches query p50 %s p99 %s; "+
			"single %.0f/s, conditional %.0f/s; decisions %.0f/s (%.1f%% refused), contended %.0f/s (%.1f%% refused); "+
			"single plain %.0f/s, tagged %.0f/s; appends with indexes %.0f/s, without %.0f/s; batches with %.0f/s, without %.0f/s",
			d.taggedBatch, d.plainInsert, d.tagQuery.p50, d.tagQuery.p99, d.query.p50, d.query.p99, d.single, d.conditional,
			d.decisions, 100*d.decisionsLost, d.contended, 100*d.contendedLost, d.singlePlain, d.singleTagged,
			d.withIndexes, d.withoutIndexes, d.batchWith, d.batchWithout)
	}

	if o.want("scale") {
		log.Printf("many processes: 1 API + 1 dispatcher, then 2 + 2, on one database")
		if r.scale, err = scaleBench(ctx, o, fstoreDB); err != nil {
			return err
		}
	}

	if o.want("querymode") {
		log.Printf("pgx query modes side by side: single and conditional appends, stream and log reads")
		if r.modes, err = queryModeBench(ctx, o, fstoreDB); err != nil {
			return err
		}
	}

	if o.want("pooler") {
		log.Printf("the API directly and through PgBouncer in transaction mode")
		if r.pooler, err = poolerBench(ctx, o, fstoreDB); err != nil {
			return err
		}
	}

	if o.want("standby") {
		log.Printf("staleness of log reads from a hot standby (a primary and a standby of their own)")
		if r.standby, err = standbyBench(ctx, o); err != nil {
			return err
		}
		log.Printf("visible in a log read: primary p50 %s p99 %s; standby p50 %s p99 %s",
			ms(r.standby.primary.p50), ms(r.standby.primary.p99), ms(r.standby.standby.p50), ms(r.standby.standby.p99))
	}

	if o.want("trace") {
		log.Printf("tracing: single appends without tracing built in, with it off, and exporting every span")
		if r.trace, err = traceBench(ctx, o, fstoreDB); err != nil {
			return err
		}
		log.Printf("trace: none %.0f/s, off %.0f/s, on %.0f/s (%d spans exported)", r.trace.none, r.trace.off, r.trace.on, r.trace.spans)
	}

	if o.want("console") {
		log.Printf("console: every page's API calls on a store of at least %d events and %d partitions",
			consoleMinEvents, consoleMinPartitions)
		if r.console, err = consoleBench(ctx, c, fstoreDB, o.events); err != nil {
			return err
		}
	}

	r.apiRSS = api.peakRSS()
	if len(o.only) > 0 {
		o.out, o.readme = "", ""
	}
	return r.write(o)
}

func check(ok bool) string {
	if ok {
		return "✅ met"
	}
	return "❌ missed"
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// dropViews deletes a section's views once it is measured: left behind,
// nobody consumes them, and every later status would count their pending
// events (millions by the end of the run), which is no section's figure.
func dropViews(c *client, views ...string) error {
	for _, v := range views {
		if _, err := c.do("DELETE", "/v1/views/"+v, nil, http.StatusNoContent); err != nil {
			return fmt.Errorf("dropping view %s: %w", v, err)
		}
	}
	return nil
}
