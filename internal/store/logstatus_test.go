package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

func TestLogStatus(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	before := time.Now()
	st, err := s.LogStatus(ctx)
	require.NoError(t, err)
	assert.WithinDuration(t, before, st.At, time.Minute, "the database's clock")
	st.At = time.Time{}
	assert.Equal(t, store.LogStatus{}, st, "an empty log")

	register(t, s, "order", "created")
	last := chain(t, s, "order", "o-1", 30)
	st, err = s.LogStatus(ctx)
	require.NoError(t, err)
	assert.Equal(t, last.Offset, st.LastOffset)
	// The statistics follow the commits within about a second.
	waitFor(t, "the estimate to count 30 events", func() bool {
		st, err = s.LogStatus(ctx)
		require.NoError(t, err)
		return st.EventsEstimate == 30
	})
}
