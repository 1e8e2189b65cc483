package store_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

func TestRegisterEventType(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	et := store.EventType{Decider: "order", Event: "created", EventVersion: 1, Description: "an order was placed"}
	got, created, err := s.RegisterEventType(ctx, et)
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, et, got)

	_, created, err = s.RegisterEventType(ctx, et)
	require.NoError(t, err)
	assert.False(t, created, "identical registration")

	other := et
	other.Description = "something else"
	_, _, err = s.RegisterEventType(ctx, other)
	assert.ErrorIs(t, err, store.ErrRegistrationConflict)

	v2 := et
	v2.EventVersion = 2
	_, created, err = s.RegisterEventType(ctx, v2)
	require.NoError(t, err)
	assert.True(t, created)
	_, _, err = s.RegisterEventType(ctx, store.EventType{Decider: "invoice", Event: "sent", EventVersion: 1})
	require.NoError(t, err)

	all, err := s.ListDeciders(ctx)
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, "invoice", all[0].Decider)
	assert.Equal(t, "order", all[1].Decider)
	require.Len(t, all[1].Events, 2)
	assert.Equal(t, int64(2), all[1].Events[1].EventVersion)

	one, err := s.GetDecider(ctx, "order")
	require.NoError(t, err)
	assert.Equal(t, all[1], one)
	_, err = s.GetDecider(ctx, "nope")
	assert.ErrorIs(t, err, store.ErrNotFound)
}
