package store_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// A connection lost in the middle of an answer (the server died, a failover)
// is ErrUnavailable, whatever was asked: the client may retry. Only an empty
// stream says "has no events".
func TestLostConnectionIsUnavailable(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	stored := appendOne(t, s, ev("order", "o-1", nil))

	proxy := storetest.NewProxy(t, storetest.URL(t, s))
	via := storetest.OpenStore(t, proxy.URL)

	calls := []struct {
		name, sql string
		call      func() error
	}{
		{"LastEvent", `DESC LIMIT 1`, func() error { _, err := via.LastEvent(ctx, "order", "o-1"); return err }},
		{"GetEvent", `WHERE event_id = $1`, func() error { _, err := via.GetEvent(ctx, stored.EventID); return err }},
		{"ReadEvents", `read_events`, func() error { _, err := via.ReadEvents(ctx, store.ReadQuery{Limit: 10}); return err }},
		{"AppendEvents", `INSERT INTO events`, func() error {
			_, err := via.AppendEvents(ctx, []store.NewEvent{ev("order", "o-1", &stored.EventID), ev("order", "o-2", nil)})
			return err
		}},
	}
	for _, c := range calls {
		proxy.CutAnswerTo(c.sql)
		err := c.call()
		require.Error(t, err, c.name)
		assert.ErrorIs(t, err, store.ErrUnavailable, "%s: %v", c.name, err)
		assert.NotContains(t, err.Error(), "has no events", c.name)
		require.NoError(t, via.Ping(ctx), "%s: the pool reconnects", c.name)
	}

	_, err := via.LastEvent(ctx, "order", "nobody")
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.Contains(t, err.Error(), "has no events")
	_, err = via.LastEvent(ctx, "order", "o-1")
	assert.NoError(t, err, "served again once the connection is back")
}
