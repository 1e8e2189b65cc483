package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
)

type hookFigures struct {
	scoped, unscoped float64 // pushes/s: 10% of the backlog's events match; all of them do
	recordingOff     float64 // pushes/s, unscoped, with FSTORE_ATTEMPT_RETENTION=0
}

// The matching backlog of every push run.
const hookBacklog = 10_000

// hookBench measures pushes/s from a backlog of 10,000 matching events:
// a view scoped to a decider holding 10% of 100,000 events appended
// together, an unscoped view over 10,000 events (the better of two runs of
// each), and the unscoped run by a dispatcher that records no attempts (the
// better of two), the runs alternating.
func hookBench(ctx context.Context, c *client, dispatcherBin, dbURL string) (hookFigures, error) {
	var f hookFigures
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return f, err
	}
	defer conn.Close(ctx)
	for _, d := range []string{"hook_hit", "hook_miss", "hook_all"} {
		if err := c.register(d, "created"); err != nil {
			return f, err
		}
	}
	// Two rounds, each: a dispatcher recording attempts pushes an unscoped
	// and a scoped backlog, then one recording none pushes an unscoped one.
	// The better run of each counts: on a shared machine one run of a few
	// seconds swings by 20% or more, and alternating spreads the drift.
	for round := range 2 {
		if err := withDispatcher(ctx, dispatcherBin, dbURL, nil, func() error {
			u, err := pushRun(ctx, c, conn, "hook_on", ``, hookBacklog, "hook_all", fmt.Sprint("on", round))
			if err != nil {
				return err
			}
			sc, err := pushRun(ctx, c, conn, "hook_scoped", `,"deciders":["hook_hit"]`, 10*hookBacklog, "hook_hit",
				fmt.Sprint("sc", round))
			if err != nil {
				return err
			}
			log.Printf("hooks: round %d: unscoped %.0f/s, scoped %.0f/s", round+1, u, sc)
			f.unscoped, f.scoped = max(f.unscoped, u), max(f.scoped, sc)
			return nil
		}); err != nil {
			return f, err
		}
		if err := withDispatcher(ctx, dispatcherBin, dbURL, []string{"FSTORE_ATTEMPT_RETENTION=0"}, func() error {
			off, err := pushRun(ctx, c, conn, "hook_off", ``, hookBacklog, "hook_all", fmt.Sprint("off", round))
			if err == nil {
				log.Printf("hooks: round %d: unscoped, no attempts recorded, %.0f/s", round+1, off)
				f.recordingOff = max(f.recordingOff, off)
			}
			return err
		}); err != nil {
			return f, err
		}
	}
	log.Printf("hooks: scoped %.0f/s, unscoped %.0f/s, unscoped without attempts %.0f/s", f.scoped, f.unscoped, f.recordingOff)
	return f, nil
}

// withDispatcher runs f while a dispatcher with env runs, and stops it.
func withDispatcher(ctx context.Context, bin, dbURL string, env []string, f func() error) error {
	d, err := startDispatcher(ctx, bin, dbURL, env...)
	if err != nil {
		return err
	}
	defer d.stop()
	return f()
}

// pushRun appends total events in SQL (hookBacklog of decider hit, the rest
// hook_miss), registers a view starting just before them and returns
// pushes/s until the receiver has every matching event.
func pushRun(ctx context.Context, c *client, conn *pgx.Conn, view, scope string, total int, hit, tag string) (float64, error) {
	rcv, err := newPushReceiver()
	if err != nil {
		return 0, err
	}
	defer rcv.close()
	// Taken before the load's transaction starts: its events are created
	// after it, and nothing appended before is pushed.
	since := time.Now().UTC().Format(time.RFC3339Nano)
	if err := loadMixed(ctx, conn, total, hookBacklog, hit, "hook_miss", tag); err != nil {
		return 0, err
	}
	start := time.Now()
	body := fmt.Appendf(nil, `{"start_at":%q,"edge_function_url":%q%s}`, since, rcv.url, scope)
	if _, err := c.do("PUT", "/v1/views/"+view, body, http.StatusCreated); err != nil {
		return 0, err
	}
	for rcv.delivered() < hookBacklog {
		if time.Since(start) > 5*time.Minute {
			return 0, fmt.Errorf("%s: pushed %d of %d events in 5 minutes", view, rcv.delivered(), hookBacklog)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// From the first push to the last: the dispatcher notices a new view at
	// its next poll (up to a second after the PUT), which is no push rate.
	rcv.mu.Lock()
	var first, last time.Time
	for _, at := range rcv.arrived {
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	rcv.mu.Unlock()
	rate := float64(hookBacklog-1) / last.Sub(first).Seconds()
	if rcv.delivered() > hookBacklog {
		return 0, fmt.Errorf("%s: %d events pushed, only %d match", view, rcv.delivered(), hookBacklog)
	}
	_, err = c.do("DELETE", "/v1/views/"+view, nil, http.StatusNoContent)
	return rate, err
}
