package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// fstore-sql's final-check trigger read every earlier event of the stream,
// so appends slowed down as a stream grew. Ours reads the previous event
// only. Proven by counting the buffers one append touches (deterministic,
// unlike a timing): at 5,000 events it touches about as many as at 1.
func TestAppendCostDoesNotGrowWithStream(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	short := appendOne(t, s, ev("order", "short", nil))
	long := chain(t, s, "order", "long", 5000)
	conn := connect(t, s)
	// Warm the session's caches (trigger plans, catalog) before counting.
	appendBuffers(t, conn, ev("order", "short", &short.EventID))

	atShort := appendBuffers(t, conn, ev("order", "short", &short.EventID))
	atLong := appendBuffers(t, conn, ev("order", "long", &long.EventID))
	t.Logf("buffers touched by one append: stream of 1 event %d, of 5000 events %d", atShort, atLong)
	assert.LessOrEqual(t, atLong, atShort+8, "append cost must not grow with stream length")
}

// appendBuffers runs one append under EXPLAIN (ANALYZE, BUFFERS), rolled
// back, and returns the shared buffers its plan touched. The statement
// trigger's reads (fstore_check_appends, 0007) run after the plan and are not
// in these counts: TestAppendCheckPlanSurvivesGrowth counts its scans.
func appendBuffers(t *testing.T, conn *pgx.Conn, e store.NewEvent) int {
	t.Helper()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	return buffersTouched(t, tx, `INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		e.Event, e.EventID, e.Decider, e.DeciderID, string(e.Data), e.CommandID, e.PreviousID)
}

// buffersTouched runs sql under EXPLAIN (ANALYZE, BUFFERS) and returns the
// shared buffers its plan touched, nested statements included (not those of a
// statement trigger, which runs after the plan):
// a deterministic measure of work, unlike a timing.
func buffersTouched(t *testing.T, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, sql string, args ...any) int {
	t.Helper()
	var plan []byte
	require.NoError(t, q.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+sql, args...).Scan(&plan))
	var out []struct {
		Plan struct {
			Hit  int `json:"Shared Hit Blocks"`
			Read int `json:"Shared Read Blocks"`
		} `json:"Plan"`
	}
	require.NoError(t, json.Unmarshal(plan, &out))
	return out[0].Plan.Hit + out[0].Plan.Read
}

// The append check's plan is made once per connection (PL/pgSQL). One made
// when the connection's first insert was a batch into an empty log must
// still probe the index once the log has grown, not scan it (0010).
func TestAppendCheckPlanSurvivesGrowth(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	conn := connect(t, s)
	insert := func(n int) {
		_, err := conn.Exec(ctx, `INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
			SELECT 'created', gen_random_uuid(), 'order', gen_random_uuid()::text, '{}', gen_random_uuid(), NULL
			FROM generate_series(1, $1) i`, n)
		require.NoError(t, err)
	}
	insert(100) // the plan is made now, on a log of no page
	insert(20_000)
	first := chain(t, s, "order", "grown", 1)
	// This transaction's own scans of events, as PostgreSQL counts them.
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	e := ev("order", "grown", &first.EventID)
	_, err = tx.Exec(ctx, `INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.Event, e.EventID, e.Decider, e.DeciderID, string(e.Data), e.CommandID, e.PreviousID)
	require.NoError(t, err)
	var scanned int64
	require.NoError(t, tx.QueryRow(ctx, `SELECT COALESCE(seq_tup_read, 0) FROM pg_stat_xact_user_tables
		WHERE relid = 'events'::regclass`).Scan(&scanned))
	assert.Zero(t, scanned, "the check must probe the index, not read the log's 20,100 rows")
}
