package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"
)

type report struct {
	opts     options
	machine  string
	batch    float64
	single   float64
	ourSQL   float64
	grow     growth
	read     latency
	apiRSS   float64
	seedNote string

	seedSingle float64

	singleViews                float64
	consume1, consume8         float64
	seedConsume1, seedConsume8 float64
	emptyPoll                  latency
	caughtUp                   int64
	push                       pushFigures
	hooks                      hookFigures
	scoped                     scopedFigures
	live                       liveFigures
	dcb                        dcbFigures
	modes                      []modeFigures
	scale                      [2]scaleRun
	pooler                     poolerFigures
	standby                    standbyFigures
	trace                      traceFigures
	console                    consoleFigures
}

const (
	markStart = "<!-- bench:start -->"
	markEnd   = "<!-- bench:end -->"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// table is the summary, the same in docs/benchmarks.md and README.md.
func (r report) table() string {
	var b strings.Builder
	change := (r.grow.last - r.grow.first) / r.grow.first * 100
	fmt.Fprintf(&b, "| figure | fstore | comparison | target |\n|---|---|---|---|\n")
	seedCmp := "seed not measured"
	singleOK := "—"
	if r.seedSingle > 0 {
		seedCmp = fmt.Sprintf("seed `append_event` via pgbench: %.0f/s → %s", r.seedSingle, ratio(r.single, r.seedSingle))
		singleOK = "≥ 0.8× seed: " + check(r.single >= 0.8*r.seedSingle)
	}
	fmt.Fprintf(&b, "| single-event HTTP appends/s, %d clients, own stream each, new stream every 10 events | %.0f/s | %s | %s |\n",
		r.opts.clients, r.single, seedCmp, singleOK)
	fmt.Fprintf(&b, "| the same through fstore's `append_event` via pgbench (SQL, no HTTP) | %.0f/s | %s of the seed | — |\n",
		r.ourSQL, ratio(r.ourSQL, r.seedSingle))
	fmt.Fprintf(&b, "| HTTP appends/s while %d streams grow to %d events | first thousand %.0f/s, last thousand %.0f/s | %+.1f%% | within 10%%: %s |\n",
		r.opts.clients, r.opts.growTo, r.grow.first, r.grow.last, change, check(change > -10))
	fmt.Fprintf(&b, "| batch append, 100 events per request, 8 clients (loads the store: %d events) | %.0f events/s | | ≥ 50,000: %s |\n",
		r.opts.events, r.batch, check(r.batch >= 50000))
	fmt.Fprintf(&b, "| read a 100-event stream over HTTP, one client | p50 %s, p99 %s | | p50 ≤ 2 ms: %s |\n",
		ms(r.read.p50), ms(r.read.p99), check(r.read.p50 <= 2*time.Millisecond))
	fmt.Fprintf(&b, "| single-event HTTP appends/s with 10 views registered | %.0f/s | %s of the same with none | ≥ 0.9×: %s |\n",
		r.singleViews, ratio(r.singleViews, r.single), check(r.singleViews >= 0.9*r.single))
	for _, row := range []struct {
		n          int
		ours, seed float64
	}{{1, r.consume1, r.seedConsume1}, {8, r.consume8, r.seedConsume8}} {
		cmp, ok := "seed not measured", "—"
		if row.seed > 0 {
			cmp = fmt.Sprintf("seed `stream_events(view, 1)` + `ack_event` via pgbench: %.0f/s → %s", row.seed, ratio(row.ours, row.seed))
			ok = "≥ 10× seed: " + check(row.ours >= 10*row.seed)
		}
		fmt.Fprintf(&b, "| events consumed and acked/s over HTTP, 10,000 partitions × 5 events, %d consumer(s) (limit 100, max_per_partition 5) | %.0f/s | %s | %s |\n",
			row.n, row.ours, cmp, ok)
	}
	fmt.Fprintf(&b, "| an empty poll, %d caught-up partitions | p50 %s, p99 %s | | p50 ≤ 2 ms: %s |\n",
		r.caughtUp, ms(r.emptyPoll.p50), ms(r.emptyPoll.p99), check(r.emptyPoll.p50 <= 2*time.Millisecond))
	fmt.Fprintf(&b, "| pushes/s by the dispatcher to a local receiver answering 204, 1,000 partitions × 10 events of backlog | %.0f/s | | ≥ 3,000: %s |\n",
		r.push.deliveries, check(r.push.deliveries >= 3000))
	fmt.Fprintf(&b, "| append → push latency at 100 appends/s | p50 %s, p99 %s | | p50 ≤ 50 ms: %s, p99 ≤ 250 ms: %s |\n",
		ms(r.push.latency.p50), ms(r.push.latency.p99), check(r.push.latency.p50 <= 50*time.Millisecond), check(r.push.latency.p99 <= 250*time.Millisecond))
	fmt.Fprintf(&b, "| single-event HTTP appends/s while a view is pushed | %.0f/s | %s of the same with no view | ≥ 0.9×: %s |\n",
		r.push.appendsWhile, ratio(r.push.appendsWhile, r.single), check(r.push.appendsWhile >= 0.9*r.single))
	sc, h := r.scoped, r.hooks
	share := 0.0
	if sc.drainAll > 0 {
		share = float64(sc.drainScoped) / float64(sc.drainAll)
	}
	fmt.Fprintf(&b, "| scoped view over one decider holding 1%% of a log of %d events (%d), `start_at` at the log's beginning: wall time to drain it (%d consumers, limit 100, max_per_partition 5) | %.2f s | unscoped view over the same log: %.1f s → %.1f%% | ≤ 5%%: %s |\n",
		sc.logEvents, sc.narrow, drainConsumers, sc.drainScoped.Seconds(), sc.drainAll.Seconds(), 100*share, check(sc.drainAll > 0 && share <= 0.05))
	fmt.Fprintf(&b, "| an empty poll of a scoped view, 100 scoped views registered, %d caught-up partitions | p50 %s, p99 %s | | p50 ≤ 2 ms: %s |\n",
		sc.pollPartitions, ms(sc.poll.p50), ms(sc.poll.p99), check(sc.poll.p50 > 0 && sc.poll.p50 <= 2*time.Millisecond))
	fmt.Fprintf(&b, "| single-event HTTP appends/s with 10 scoped views registered (over the appended decider) | %.0f/s | %s of the same with none, measured beside it (%.0f/s) | ≥ 0.95×: %s |\n",
		sc.appends10, ratio(sc.appends10, sc.appendsNone), sc.appendsNone, check(sc.appendsNone > 0 && sc.appends10 >= 0.95*sc.appendsNone))
	fmt.Fprintf(&b, "| pushes/s of a scoped hook view where 10%% of 100,000 events match (backlog of %d matching) | %.0f/s | unscoped, backlog of %d: %.0f/s → %s | ≥ 1×: %s |\n",
		hookBacklog, h.scoped, hookBacklog, h.unscoped, ratio(h.scoped, h.unscoped), check(h.unscoped > 0 && h.scoped >= h.unscoped))
	fmt.Fprintf(&b, "| pushes/s with attempt recording on (unscoped, backlog of %d) | %.0f/s | off (`FSTORE_ATTEMPT_RETENTION=0`): %.0f/s → %s | ≥ 0.9×: %s |\n",
		hookBacklog, h.unscoped, h.recordingOff, ratio(h.unscoped, h.recordingOff), check(h.recordingOff > 0 && h.unscoped >= 0.9*h.recordingOff))
	r.live.rows(&b)
	d := r.dcb
	fmt.Fprintf(&b, "| batch append, 100 events per request, 8 clients, 3 tags and 200 bytes of metadata on every event (%d events) | %.0f events/s | PostgreSQL's own multi-row INSERT of the same rows into a table without indexes, 8 connections: %.0f rows/s → %s | ≥ 50,000: %s |\n",
		d.taggedEvents, d.taggedBatch, d.plainInsert, ratio(d.taggedBatch, d.plainInsert), check(d.taggedBatch >= 50000))
	fmt.Fprintf(&b, "| single-event HTTP appends/s with 3 tags and 200 bytes of metadata, %d clients | %.0f/s | %s of the same without (%.0f/s), side by side | ≥ 0.9×: %s |\n",
		r.opts.clients, d.singleTagged, ratio(d.singleTagged, d.singlePlain), d.singlePlain, check(d.singleTagged >= 0.9*d.singlePlain))
	fmt.Fprintf(&b, "| a tag query (the lending decision's: 2 items, 1 tag each) over HTTP, one client, store of %d events | p50 %s, p99 %s | | p50 ≤ 2 ms: %s |\n",
		d.storeEvents, ms(d.tagQuery.p50), ms(d.tagQuery.p99), check(d.tagQuery.p50 <= 2*time.Millisecond))
	fmt.Fprintf(&b, "| `POST /v1/events/query`, the lending decision's query by matches on data (2 items), one client, same store | p50 %s, p99 %s | | p50 ≤ 2 ms: %s |\n",
		ms(d.query.p50), ms(d.query.p99), check(d.query.p50 <= 2*time.Millisecond))
	fmt.Fprintf(&b, "| conditional appends/s (1 event, condition on its copy's tag), %d clients, copies of their own | %.0f/s | %s of single-event appends measured just before (%.0f/s) | ≥ 0.5×: %s |\n",
		r.opts.clients, d.conditional, ratio(d.conditional, d.single), d.single, check(d.conditional >= 0.5*d.single))
	fmt.Fprintf(&b, "| whole decisions/s (tag query, then conditional append), %d clients, random copies of %d | %.0f/s | %.1f%% refused by their condition | ≥ 3,000: %s |\n",
		r.opts.clients, libCopies, d.decisions, 100*d.decisionsLost, check(d.decisions >= 3000))
	fmt.Fprintf(&b, "| whole decisions/s, 16 clients competing for 16 copies | %.0f/s | %.1f%% refused by their condition | — |\n",
		d.contended, 100*d.contendedLost)
	fmt.Fprintf(&b, "| single-event HTTP appends/s at the end of the run, with the query indexes (GIN on data, GIN on tags, (event, offset)) | %.0f/s | %s of the same with them dropped (%.0f/s) | — |\n",
		d.withIndexes, ratio(d.withIndexes, d.withoutIndexes), d.withoutIndexes)
	fmt.Fprintf(&b, "| batch append (100 per request, 8 clients, 200,000 events) at the end of the run, with the query indexes | %.0f events/s | %s of the same with them dropped (%.0f events/s) | — |\n",
		d.batchWith, ratio(d.batchWith, d.batchWithout), d.batchWithout)
	one, two := r.scale[0], r.scale[1]
	fmt.Fprintf(&b, "| single-event HTTP appends/s, %d clients split over 2 API processes while 2 dispatchers push every event | %.0f/s | 1 API + 1 dispatcher: %.0f/s → %s | ≥ 0.9× of 1 + 1 (2 cores: no gain expected): %s |\n",
		r.opts.clients, two.appends, one.appends, ratio(two.appends, one.appends), check(two.appends >= 0.9*one.appends))
	fmt.Fprintf(&b, "| events pushed/s in the same run (from its first append to its last push) | %.0f/s | 1 + 1: %.0f/s; partitions out of order: %d and %d; repeated pushes: %d and %d | every event, in order per partition: %s |\n",
		two.pushed, one.pushed, one.misordered, two.misordered, one.repeats, two.repeats, check(one.misordered+two.misordered == 0))
	fmt.Fprintf(&b, "| CPU of the APIs, dispatchers and PostgreSQL per event appended and pushed, same run | %.0f µs | 1 + 1: %.0f µs → %s | — |\n",
		two.cpu, one.cpu, ratio(two.cpu, one.cpu))
	fmt.Fprintf(&b, "| pushes/s draining 1,000 partitions × 10 events of backlog, 2 dispatchers | %.0f/s | 1 dispatcher: %.0f/s → %s | ≥ 0.9×: %s |\n",
		two.drain, one.drain, ratio(two.drain, one.drain), check(two.drain >= 0.9*one.drain))
	t := r.trace
	fmt.Fprintf(&b, "| single-event HTTP appends/s, %d clients, tracing off (no `OTEL_*` variables) | %.0f/s | %s of a build without tracing (%.0f/s), in turn on one store; CPU (API + PostgreSQL) per append %.0f µs against %.0f µs | ≥ 0.98×: %s |\n",
		r.opts.clients, t.off, ratio(t.off, t.none), t.none, t.cpuOff, t.cpuNone, check(t.off >= 0.98*t.none))
	fmt.Fprintf(&b, "| the same, tracing on, every span exported to a local OTLP/HTTP receiver (%d spans) | %.0f/s | %s of the build without tracing; CPU per append %.0f µs | ≥ 0.8×: %s |\n",
		t.spans, t.on, ratio(t.on, t.none), t.cpuOn, check(t.on >= 0.8*t.none))
	b.WriteString(r.console.rows())
	fmt.Fprintf(&b, "| peak RSS of the API over the whole run | %.0f MiB | | < 150 MB: %s |\n", r.apiRSS, check(r.apiRSS*1.048576 < 150))
	fmt.Fprintf(&b, "| peak RSS of the dispatcher over its run | %.0f MiB | | < 200 MB: %s |\n", r.push.rss, check(r.push.rss*1.048576 < 200))
	return b.String()
}

func (r report) write(o options) error {
	table := r.table()
	fmt.Println(table + r.deploymentTables())
	if o.out != "" {
		var b strings.Builder
		b.WriteString("# Benchmarks\n\n")
		b.WriteString("Measured by `make bench` (scripts/bench.sh → cmd/fstore-bench), which writes this file.\n\n")
		fmt.Fprintf(&b, "Machine: %s.\n\n", r.machine)
		b.WriteString(table)
		if r.seedNote != "" {
			fmt.Fprintf(&b, "\nNote: %s.\n", r.seedNote)
		}
		b.WriteString(r.deploymentTables())
		b.WriteString(method)
		fmt.Fprintf(&b, "\n## The lending decision's queries at %d events\n\n", r.dcb.storeEvents)
		b.WriteString("By tags: the plan `fstore_tag_events` runs (its generic plan, made once per connection) for copy `c-4242` and reader `r-77`, as auto_explain logs it, taken before the other DCB figures:\n\n```\n")
		b.WriteString(r.dcb.tagPlan)
		b.WriteString("\n```\n\nBy matches on data: `EXPLAIN (ANALYZE, BUFFERS)` of the SQL `query_events` runs for the same copy and reader:\n\n```\n")
		b.WriteString(r.dcb.plan)
		b.WriteString("\n```\n")
		sc := r.scoped
		fmt.Fprintf(&b, "\n## A scoped view's discovery at %d events\n\n", sc.logEvents)
		fmt.Fprintf(&b, "One discovery pass from the log's beginning, under `EXPLAIN (ANALYZE, BUFFERS)`: the view over the narrow decider (%d events, 1%%) finds every one of its partitions reading %d buffers in %s; an unscoped view's pass (50,000 offsets, a window of the log) reads %d buffers in %s.\n",
			sc.narrow, sc.passScoped.buffers, ms(sc.passScoped.took), sc.passAll.buffers, ms(sc.passAll.took))
		b.WriteString("\n## Appends/s per thousand while streams grow\n\n| thousand | appends/s |\n|---|---|\n")
		for i, v := range r.grow.perThousand {
			fmt.Fprintf(&b, "| %d | %.0f |\n", i+1, v)
		}
		if err := os.WriteFile(o.out, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	if o.readme != "" {
		return updateReadme(o.readme, fmt.Sprintf("Measured on %s:\n\n%s", r.machine, table))
	}
	return nil
}

// deploymentTables are the figures behind the choices for poolers and
// standbys (docs/operating.md, docs/scaling.md).
func (r report) deploymentTables() string {
	var b strings.Builder
	b.WriteString("\n## Query modes, PgBouncer and a standby\n\n")
	b.WriteString("pgx's query modes, each through its own API process on the loaded store (better of two runs each, taken in turn). " +
		"The store uses cache_statement directly and cache_describe behind a connection pooler, where named prepared statements break:\n\n")
	b.WriteString("| `default_query_exec_mode` | single-event appends/s, 32 clients | CPU per append (API + PostgreSQL) | conditional appends/s | read a 100-event stream, p50 | CPU per stream read | read a 100-event page of the log, p50 | CPU per log page |\n|---|---|---|---|---|---|---|---|\n")
	for _, m := range r.modes {
		fmt.Fprintf(&b, "| %s | %.0f/s | %.0f µs | %.0f/s | %s | %.0f µs | %s | %.0f µs |\n", m.mode, m.single, m.cpuAppend, m.conditional,
			ms(m.stream.p50), m.cpuStream, ms(m.logPage.p50), m.cpuLog)
	}
	p := r.pooler
	b.WriteString("\nThe API directly on PostgreSQL and through PgBouncer 1.18 in transaction mode (scripts/pgbouncer.sh), better of two runs each:\n\n")
	b.WriteString("| path | single-event appends/s, 32 clients | read a 100-event stream, p50 / p99 |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| direct | %.0f/s | %s / %s |\n", p.direct, ms(p.directRead.p50), ms(p.directRead.p99))
	fmt.Fprintf(&b, "| through PgBouncer | %.0f/s (%s) | %s / %s |\n", p.pooled, ratio(p.pooled, p.direct), ms(p.poolRead.p50), ms(p.poolRead.p99))
	sb := r.standby
	b.WriteString("\nHow stale a standby reader is: 100 appends/s through one API, a reader paging the log through another, " +
		"on a primary and an asynchronous hot standby of their own (durable settings); the time from an append's 201 to the event in one of the reader's pages:\n\n")
	b.WriteString("| the reader reads | p50 | p99 |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| the primary | %s | %s |\n", ms(sb.primary.p50), ms(sb.primary.p99))
	fmt.Fprintf(&b, "| the standby (`FSTORE_READ_DATABASE_URL`) | %s | %s |\n", ms(sb.standby.p50), ms(sb.standby.p99))
	return b.String()
}

// updateReadme replaces what stands between the bench markers.
func updateReadme(path, content string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i, j := bytes.Index(b, []byte(markStart)), bytes.Index(b, []byte(markEnd))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s … %s markers", path, markStart, markEnd)
	}
	out := append([]byte{}, b[:i+len(markStart)]...)
	out = append(out, "\n"+content+"\n"...)
	out = append(out, b[j:]...)
	return os.WriteFile(path, out, 0o644)
}

const method = `
## How it is measured

- Everything runs on one machine: PostgreSQL (a throwaway cluster with
  durable settings), the API binary, and the load generators, which share its
  cores. The seed (fstore-sql's schema.sql) is loaded into a database of its
  own in the same cluster and driven by pgbench with the same pattern: each
  client appends to a stream of its own and starts a new one every 10 events.
- HTTP clients are Go programs with one keep-alive connection per client;
  every request is checked for its expected status.
- The store is first loaded with the batch endpoint, so every later figure is
  taken on a store of that size.
- Growing streams: each client grows one stream; a thousand's rate is
  clients × 1000 / the mean time the clients took for that thousand.
- Peak RSS is the API process's VmHWM at the end of the run.
- Tracing: three API processes in turn on the store (the main one idle):
  one built without tracing ("-tags fstore_notrace"), the usual one with no
  "OTEL_*" variables, and the usual one exporting every span (the request's
  and its store call's) over OTLP/HTTP to a receiver in the benchmark that
  decodes them; single appends for half the run length each, twice in turn,
  averaged, with the CPU time of the API process and of PostgreSQL's
  processes per append (from /proc), which other load on the machine moves
  far less than the rates.
- Metadata and tags: batches of events with 3 tags ("stream:…",
  "customer:…", "region:…") and 200 bytes of metadata bring the store to at
  least 2 million events before the DCB figures (at least 200,000 of them);
  then as many of the same rows (up to 400,000) are inserted by a Go program
  with pgx, 100 rows per multi-row "INSERT", 8 connections, into a table
  without indexes, triggers or constraints: what PostgreSQL alone does with
  such rows on this machine. Single appends with and without tags and
  metadata are measured side by side, twice each, against the noise.
- Live follows run on an API process of their own over the loaded store
  (its peak RSS is the live row's). Catch-up: one client follows the whole
  log from offset 0 as Server-Sent Events, reading the id lines, until the
  last event came; beside it, PostgreSQL exports the same rows with
  "COPY (SELECT row_to_json(e) FROM events e ORDER BY offset) TO STDOUT"
  to a client that counts the bytes; best of two alternating runs each.
  Then 1,000 SSE subscribers follow the whole log from its end: the API's
  connections (pg_stat_activity, by application_name) are sampled 20 times
  over 2 s while they wait; then one client appends 1,000 events at 100/s
  through the same API, and every subscriber times each frame from just
  before its append was sent. Last, single appends (as above) on that API
  with no subscriber, then with 100 following the whole log and draining
  what they get.
- Dynamic consistency boundaries (docs/dcb.md): the store then gets 10,000
  copies and 50,000 loans (copy among 10,000, reader among 2,000), tagged
  "copy:…" and "reader:…" and with the same ids in their data. The query is
  the lending decision's (the copy's events, the reader's loans), by tags
  and by matches on data. Conditional appends: each client lends copies of
  its own, conditioned on the copy's tag after the copy's last offset, so
  all succeed; single appends are measured just before them, for the ratio.
  Whole decisions: the tag query, then a conditional append on its
  position; a 409 counts as refused. Then single and batch appends are
  measured twice on the same store, with the three query indexes and after
  dropping them.

- Scoped views: the store is brought to at least 2,000,000 events by
  appending in SQL (streams of 10) events of a "noise" decider and, spread
  evenly among them, of a "narrow" decider holding 1% of the whole log. Both
  drains start at the log's beginning and use the same consumers; each ends
  when every matching event is acked. The empty poll is that of a view
  scoped to the noise decider, its every partition caught up, with 99 other
  scoped views registered. Appends beside 10 scoped views (scoped to the
  appended decider) alternate with appends beside none, twice; the better
  run of each counts. Push runs: 10,000 matching events each, appended
  in SQL just before the view is registered; the scoped one among 90,000
  events of another decider, appended together (one in ten matches). Each
  push figure is the better of two runs, alternating: a dispatcher pushes an
  unscoped then a scoped backlog, then another, with
  FSTORE_ATTEMPT_RETENTION=0 (no attempts recorded), an unscoped one. A
  push rate runs from the first push received to the last (a dispatcher
  notices a new view at its next poll, up to a second after it is registered).

- Many processes: 1 API and 1 dispatcher, then 2 and 2, on the loaded
  store. A live view with a local receiver gets every event while the
  clients, split evenly over the APIs, append single events; then a
  backlog of 1,000 partitions × 10 events is drained by the dispatchers.
  The receiver checks that each partition's pushes never go back.

- The console (docs/operating.md): at the end of the run the store holds at
  least 2,000,000 events (topped up in streams of 10 when the sections
  before left fewer), and a view from the log's start discovers every
  stream (the partitions each row names); all but 1,000 are acked in
  SQL, 100 of those are leased and nacked through the API, so that they
  are failing with an attempt recorded, and 50 more are leased for an hour.
  A view page far into the view starts after its first 100,000 partitions
  (the cursor of a walk of 1,000 at a time). Each page's calls are then made as
  the page makes them (the overview's and a partition's two at once, the
  others in order), 100 times after 5 to warm up, and the whole page is
  timed: the console itself is static and served from memory. Last, a
  second view from the log's start discovers every stream and acks none
  (every partition behind, every event pending), and the overview and
  that view's page are timed 10 times after 2.

Why the figures are what they are: [performance.md](performance.md);
what they mean for scaling out: [scaling.md](scaling.md).
`
