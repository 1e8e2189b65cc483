package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// consoleTarget is the bound on a console page's API calls (p50).
const consoleTarget = 300 * time.Millisecond

// Console store size: the figures are taken at no less than these.
const (
	consoleMinEvents     = 2_000_000
	consoleMinPartitions = 100_000
	consoleFailing       = 100 // partitions whose last delivery failed
	consoleLeased        = 50  // partitions leased while the pages load
	consoleBehind        = 1_000
	consoleDeep          = 100_000 // a page of all partitions starts after this many
)

// consolePage is one console page's API calls, made as the page makes them.
type consolePage struct {
	name  string
	calls []string // every call of the page (GET paths)
	// parallel: the page sends its calls at once (the overview); else in order.
	parallel bool
}

type consoleFigures struct {
	events, partitions int64
	pages              []consolePageFigure
}

type consolePageFigure struct {
	name  string
	calls int
	lat   latency
}

// consoleBench measures every console page's API calls on a store of at
// least 2M events and a view of at least 100k partitions, of which some are
// behind and some failing (nacked through the API, so their attempts are
// real), as an operator would find it.
func consoleBench(ctx context.Context, c *client, dbURL string, loaded int) (consoleFigures, error) {
	var f consoleFigures
	// The sections before this one appended events of their own: top up
	// from what the log holds, not from what the first load put there.
	var before struct {
		Log struct {
			EventsEstimate int64 `json:"events_estimate"`
		} `json:"log"`
	}
	if err := c.getJSON("/v1/status", &before); err != nil {
		return f, err
	}
	if have := max(int64(loaded), before.Log.EventsEstimate); have < consoleMinEvents {
		more := int(consoleMinEvents-have+99) / 100 * 100
		log.Printf("console: loading %d more events, to at least %d", more, consoleMinEvents)
		if _, err := batchLoad(c, more, 100, 8); err != nil {
			return f, err
		}
	}
	const view = "console_all"
	if _, err := c.do("PUT", "/v1/views/"+view, []byte(`{"start_at":"2000-01-01T00:00:00Z"}`), http.StatusCreated); err != nil {
		return f, err
	}
	if err := consoleState(ctx, c, dbURL, view, &f); err != nil {
		return f, err
	}
	if f.partitions < consoleMinPartitions {
		return f, fmt.Errorf("console: the view has %d partitions, want at least %d", f.partitions, consoleMinPartitions)
	}
	var failing struct {
		Partitions []struct {
			Decider   string `json:"decider"`
			DeciderID string `json:"decider_id"`
		} `json:"partitions"`
	}
	if err := c.getJSON("/v1/views/"+view+"/partitions?state=failing&limit=1", &failing); err != nil {
		return f, fmt.Errorf("console: the failing partitions: %w", err)
	}
	if len(failing.Partitions) == 0 {
		return f, errors.New("console: no failing partition to show")
	}
	p := failing.Partitions[0]
	part := fmt.Sprintf("/v1/views/%s/partitions/%s/%s", view, url.PathEscape(p.Decider), url.PathEscape(p.DeciderID))
	var status struct {
		Log struct {
			LastOffset int64 `json:"last_offset"`
		} `json:"log"`
	}
	if err := c.getJSON("/v1/status", &status); err != nil {
		return f, err
	}
	deep, err := consoleCursor(c, view, consoleDeep)
	if err != nil {
		return f, err
	}
	tail := status.Log.LastOffset - 50
	stream := "decider=" + url.QueryEscape(p.Decider) + "&decider_id=" + url.QueryEscape(p.DeciderID)
	pages := []consolePage{
		{name: "overview", calls: []string{"/v1/status", "/v1/views"}, parallel: true},
		{name: "log (the newest events, then the live tail from the newest offset)",
			calls: []string{"/v1/status", fmt.Sprintf("/v1/events?after=%d&limit=1000", tail)}},
		{name: "log filtered by decider", calls: []string{"/v1/status", fmt.Sprintf("/v1/events?decider=bench&after=%d&limit=1000", tail)}},
		{name: "stream", calls: []string{"/v1/events/last?" + stream, "/v1/events?" + stream + "&after=0&limit=100"}},
		{name: "deciders", calls: []string{"/v1/deciders"}},
		{name: "view, all partitions", calls: []string{"/v1/views/" + view, "/v1/views/" + view + "/partitions?state=all&limit=50"}},
		{name: "view, failing partitions", calls: []string{"/v1/views/" + view, "/v1/views/" + view + "/partitions?state=failing&limit=50"}},
		{name: "view, partitions behind", calls: []string{"/v1/views/" + view, "/v1/views/" + view + "/partitions?state=behind&limit=50"}},
		{name: "view, partitions leased", calls: []string{"/v1/views/" + view, "/v1/views/" + view + "/partitions?state=leased&limit=50"}},
		{name: fmt.Sprintf("view, all partitions, the page after the first %d", consoleDeep),
			calls: []string{"/v1/views/" + view, "/v1/views/" + view + "/partitions?state=all&limit=50&after=" + url.QueryEscape(deep)}},
		{name: "partition", calls: []string{part, part + "/attempts?limit=50"}, parallel: true},
	}
	if err := f.time(c, pages, 100); err != nil {
		return f, err
	}
	return f, consoleReplay(ctx, c, dbURL, &f)
}

// time times each page n times and adds its figure.
func (f *consoleFigures) time(c *client, pages []consolePage, n int) error {
	for _, pg := range pages {
		lat, err := timePage(c, pg, n)
		if err != nil {
			return err
		}
		log.Printf("console: %s: p50 %s p99 %s", pg.name, lat.p50, lat.p99)
		f.pages = append(f.pages, consolePageFigure{name: pg.name, calls: len(pg.calls), lat: lat})
	}
	return nil
}

// discoverAll brings the view's partitions up to date with the whole log,
// one discovery pass (50,000 offsets) at a time.
func discoverAll(ctx context.Context, conn *pgx.Conn, view string) error {
	for caughtUp := false; !caughtUp; {
		if _, err := conn.Exec(ctx, `SELECT fstore_discover($1)`, view); err != nil {
			return err
		}
		if err := conn.QueryRow(ctx, `SELECT scanned_offset >= fstore_read_horizon() - 1 FROM views WHERE view = $1`,
			view).Scan(&caughtUp); err != nil {
			return err
		}
	}
	return nil
}

// consoleState discovers every stream into the view, acks all but
// consoleBehind of them (SQL: acking 200k partitions over HTTP would only
// take time), then leases consoleFailing partitions and nacks them through
// the API, so that they are failing with an attempt recorded, and leases
// consoleLeased more for an hour.
func consoleState(ctx context.Context, c *client, dbURL, view string, f *consoleFigures) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := discoverAll(ctx, conn, view); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `UPDATE view_partitions SET acked_offset = head_offset WHERE view = $1
		AND (decider, decider_id) NOT IN (SELECT decider, decider_id FROM view_partitions WHERE view = $1
		                                  ORDER BY decider_id DESC LIMIT $2)`, view, consoleBehind); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE view_partitions`); err != nil {
		return err
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM view_partitions WHERE view = $1`, view).Scan(&f.partitions); err != nil {
		return err
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&f.events); err != nil {
		return err
	}
	var leased struct {
		Events []struct {
			Decider   string `json:"decider"`
			DeciderID string `json:"decider_id"`
			LeaseID   string `json:"lease_id"`
		} `json:"events"`
	}
	body, err := c.do("POST", "/v1/views/"+view+"/stream", fmt.Appendf(nil, `{"limit":%d}`, consoleFailing), http.StatusOK)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &leased); err != nil {
		return err
	}
	for _, e := range leased.Events {
		nack := fmt.Appendf(nil, `{"decider":%q,"decider_id":%q,"lease_id":%q,"retry_after_ms":3600000}`, e.Decider, e.DeciderID, e.LeaseID)
		if _, err := c.do("POST", "/v1/views/"+view+"/nack", nack, http.StatusOK); err != nil {
			return err
		}
	}
	// Leased for an hour, never acked: the leased list is never empty.
	_, err = c.do("POST", "/v1/views/"+view+"/stream", fmt.Appendf(nil, `{"limit":%d,"lock_timeout_s":3600}`, consoleLeased), http.StatusOK)
	return err
}

// consoleCursor pages through the view's partitions, 1,000 at a time, and
// returns the cursor after the first n: where an operator paging far
// into the view would be.
func consoleCursor(c *client, view string, n int) (string, error) {
	var cursor string
	for seen := 0; seen < n; seen += 1000 {
		var page struct {
			NextAfter *string `json:"next_after"`
		}
		path := "/v1/views/" + view + "/partitions?state=all&limit=1000"
		if cursor != "" {
			path += "&after=" + url.QueryEscape(cursor)
		}
		if err := c.getJSON(path, &page); err != nil {
			return "", fmt.Errorf("console: paging the view: %w", err)
		}
		if page.NextAfter == nil {
			return "", fmt.Errorf("console: the view has fewer than %d partitions", n)
		}
		cursor = *page.NextAfter
	}
	return cursor, nil
}

// timePage times n loads of a page (after a few to warm up) and returns
// the latency of the whole page: all of its calls answered.
func timePage(c *client, pg consolePage, n int) (latency, error) {
	times := make([]time.Duration, 0, n)
	warm := min(5, n/5)
	for i := range n + warm {
		t0 := time.Now()
		if err := loadPage(c, pg); err != nil {
			return latency{}, fmt.Errorf("console page %s: %w", pg.name, err)
		}
		if i >= warm {
			times = append(times, time.Since(t0))
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return latency{p50: times[len(times)/2], p99: times[len(times)*99/100]}, nil
}

func loadPage(c *client, pg consolePage) error {
	if !pg.parallel {
		for _, path := range pg.calls {
			if _, err := c.do("GET", path, nil, http.StatusOK); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, len(pg.calls))
	var wg sync.WaitGroup
	for i, path := range pg.calls {
		wg.Go(func() { _, errs[i] = c.do("GET", path, nil, http.StatusOK) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *client) getJSON(path string, v any) error {
	body, err := c.do("GET", path, nil, http.StatusOK)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// consoleRows are the console's lines of the report.
func (f consoleFigures) rows() string {
	var out string
	for _, p := range f.pages {
		out += fmt.Sprintf("| console page %s: its %d API call(s), store of %d events, view of %d partitions | p50 %s, p99 %s | | p50 ≤ 300 ms: %s |\n",
			p.name, p.calls, f.events, f.partitions, ms(p.lat.p50), ms(p.lat.p99), check(p.lat.p50 <= consoleTarget))
	}
	return out
}
