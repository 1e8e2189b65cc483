package store_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// A view's status and a page of its partitions read what they count or
// show, not the view's other partitions: counted in buffers, not timed.
// Two views hold the same 3 partitions behind, 1 leased and 1 failing;
// "many" also has 5,002 caught up, "few" 2. The full walk of issue 11 is
// measured beside, to show that these bounds tell the two apart.
func TestViewStatusCostFollowsItsAnswer(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	register(t, s, "audit", "created")
	conn := connect(t, s)
	_, err := conn.Exec(ctx, `INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
		SELECT 'created', gen_random_uuid(), 'order', 's' || lpad(i::text, 4, '0'), '{}', gen_random_uuid(), NULL
		FROM generate_series(1, 5000) i`)
	require.NoError(t, err)
	for i := range 5 {
		appendOne(t, s, ev("audit", fmt.Sprint("a", i), nil))
	}
	registerView(t, s, "many", past(), 60)
	scoped(t, s, "few", past(), []string{"audit"}, nil)
	_, err = conn.Exec(ctx, `SELECT fstore_discover('many'), fstore_discover('few');
		UPDATE view_partitions SET acked_offset = head_offset - CASE WHEN (view, decider_id) IN
			(('many', 's2001'), ('many', 's2002'), ('many', 's2003'), ('few', 'a1'), ('few', 'a2'), ('few', 'a3'))
			THEN 1 ELSE 0 END`)
	require.NoError(t, err)
	for _, view := range []string{"many", "few"} {
		evs := lease(t, s, view, 2, 1)
		require.Len(t, evs, 2)
		_, err := s.Nack(ctx, view, evs[0].Decider, evs[0].DeciderID, evs[0].LeaseID, 0, "receiver down")
		require.NoError(t, err)
	}
	_, err = conn.Exec(ctx, `VACUUM ANALYZE view_partitions`)
	require.NoError(t, err)
	requireExactStatus(t, s, conn, "set up")

	// The bound: the big view reads at most a few buffers more than the
	// small one. The full walks read far more than that.
	const slack, walked = 10, 50
	status := func(sql, view string) int { return buffersTouched(t, conn, sql, view) }
	status(store.ViewStatusSQL, "many") // warm caches and plans
	few, many := status(store.ViewStatusSQL, "few"), status(store.ViewStatusSQL, "many")
	walk := status(referenceStatusSQL, "many")
	t.Logf("buffers read by a view's status: 7 partitions %d, 5,005 partitions %d (the full walk: %d)", few, many, walk)
	assert.LessOrEqual(t, many, few+slack)
	assert.Greater(t, walk, few+slack+walked, "the bound tells a full walk apart")

	for _, state := range []string{store.StateBehind, store.StateLeased, store.StateFailing, store.StateParked} {
		list := store.PartitionListSQL(state)
		genericBuffers(t, conn, list, "many", firstPage)
		few, many := genericBuffers(t, conn, list, "few", firstPage), genericBuffers(t, conn, list, "many", firstPage)
		walk := genericBuffers(t, conn, referenceListSQL(state), "many", referenceFirstPage)
		t.Logf("buffers read by a page of partitions %s: 7 partitions %d, 5,005 partitions %d (issue 11: %d)",
			state, few, many, walk)
		assert.LessOrEqual(t, many, few+slack, state)
		if state == store.StateBehind || state == store.StateLeased { // issue 11 walked these in key order
			assert.Greater(t, walk, few+slack+walked, "%s: the bound tells a walk apart", state)
		}
	}

	all, deepPage := store.PartitionListSQL(store.StateAll), `'order', 's4000'`
	first, deep := genericBuffers(t, conn, all, "many", firstPage), genericBuffers(t, conn, all, "many", deepPage)
	oldDeep := genericBuffers(t, conn, referenceListSQL(store.StateAll), "many", deepPage)
	t.Logf("buffers read by a page of all partitions: the first %d, after 4,000 %d (issue 11: %d)", first, deep, oldDeep)
	assert.LessOrEqual(t, deep, first+5, "a page costs the same wherever it starts")
	assert.Greater(t, oldDeep, first+walked, "issue 11's cursor, a filter in a generic plan, read from the first partition")
}

// The cursors of a first page: ListPartitions' and issue 11's.
const firstPage, referenceFirstPage = `'', ''`, `NULL, NULL`

// genericBuffers runs a page of 50 of a list statement ($1 the view, ($2,
// $3) the cursor, an SQL literal pair, $4 the limit) as a prepared
// statement with a generic plan, as a statement the pool has cached runs
// once it has run a few times, under EXPLAIN (ANALYZE, BUFFERS), and
// returns the shared buffers it touched.
func genericBuffers(t *testing.T, conn *pgx.Conn, sql, view, cursor string) int {
	t.Helper()
	_, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan;
		PREPARE list (text, text, text, int) AS `+sql)
	require.NoError(t, err)
	var plan []byte
	require.NoError(t, conn.QueryRow(ctx, fmt.Sprintf(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE list('%s', %s, 50)`,
		view, cursor)).Scan(&plan))
	_, err = conn.Exec(ctx, `DEALLOCATE list; RESET plan_cache_mode`)
	require.NoError(t, err)
	var out []struct {
		Plan struct {
			Hit  int `json:"Shared Hit Blocks"`
			Read int `json:"Shared Read Blocks"`
		} `json:"Plan"`
	}
	require.NoError(t, json.Unmarshal(plan, &out))
	return out[0].Plan.Hit + out[0].Plan.Read
}
