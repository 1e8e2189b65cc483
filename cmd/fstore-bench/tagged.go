package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Events with metadata and tags: batches, single appends, and the same rows
// inserted by PostgreSQL alone.

// benchMetadata is about 200 bytes of metadata, as a request's context is.
const benchMetadata = `{"user":"ada.lovelace@example.com","request_id":"8f3c2a1e-5b7d-4e9a-a0c4-2d6e8f1b3a5c",` +
	`"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","schema":"order.v2","source":"web"}`

// taggedEvent is appendEvent with 3 tags and benchMetadata.
func taggedEvent(buf []byte, id uuid.UUID, stream string, n int, prev *uuid.UUID) []byte {
	buf = appendEvent(buf, id, stream, n, prev)
	buf = buf[:len(buf)-1] // reopen the object
	return fmt.Appendf(buf, `,"tags":["stream:%s","customer:c-%d","region:r-%d"],"metadata":%s}`,
		stream, n%1000, n%10, benchMetadata)
}

// taggedBatchLoad is batchLoad with tagged events.
func taggedBatchLoad(c *client, total, size, workers int) (float64, error) {
	return batchLoadOf(c, total, size, workers, taggedEvent)
}

// singleTagged is singleAppends with tagged events.
func singleTagged(c *client, clients, perStream int, d time.Duration) (float64, error) {
	return singleAppendsOf(c, clients, perStream, d, taggedEvent)
}

// plainInsert inserts total rows like taggedBatchLoad's into a table
// without indexes, triggers or constraints, size rows per multi-row INSERT
// from workers connections: what PostgreSQL alone does with such rows.
func plainInsert(ctx context.Context, dbURL string, total, size, workers int) (float64, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	_, err = conn.Exec(ctx, `DROP TABLE IF EXISTS bench_plain; CREATE TABLE bench_plain (event text, event_id uuid,
		event_version bigint, decider text, decider_id text, data jsonb, command_id uuid, previous_id uuid,
		final boolean, created_at timestamptz DEFAULT now(), "offset" bigserial, metadata jsonb, tags text[])`)
	conn.Close(ctx)
	if err != nil {
		return 0, err
	}
	var values strings.Builder
	for r := range size {
		if r > 0 {
			values.WriteString(", ")
		}
		p := r * 9
		fmt.Fprintf(&values, "($%d, $%d, 1, $%d, $%d, $%d, $%d, $%d, false, $%d, $%d)", p+1, p+2, p+3, p+4, p+5, p+6, p+7, p+8, p+9)
	}
	sql := `INSERT INTO bench_plain (event, event_id, event_version, decider, decider_id, data, command_id, previous_id,
		final, metadata, tags) VALUES ` + values.String()
	requests := total / size
	var next atomic.Int64
	errs := make(chan error, workers)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, dbURL)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			args := make([]any, 0, size*9)
			for next.Add(1) <= int64(requests) {
				args = args[:0]
				for s := 0; s < size/10; s++ {
					stream := uuid.NewString()
					var prev *uuid.UUID
					for i := range 10 {
						id := uuid.New()
						args = append(args, "created", id, "bench", stream,
							fmt.Sprintf(`{"n":%d,"note":"a typical small payload"}`, i), uuid.New(), prev, benchMetadata,
							[]string{"stream:" + stream, fmt.Sprintf("customer:c-%d", i%1000), fmt.Sprintf("region:r-%d", i%10)})
						prev = &id
					}
				}
				if _, err := conn.Exec(ctx, sql, args...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(requests*size) / time.Since(start).Seconds(), nil
}
