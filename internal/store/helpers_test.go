package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
)

var ctx = context.Background()

func register(t *testing.T, s *store.Store, decider string, events ...string) {
	t.Helper()
	for _, e := range events {
		_, _, err := s.RegisterEventType(ctx, store.EventType{Decider: decider, Event: e, EventVersion: 1})
		require.NoError(t, err)
	}
}

// ev builds an event of type "created" (or the given type) on a stream.
func ev(decider, deciderID string, previous *uuid.UUID) store.NewEvent {
	return store.NewEvent{
		Event: "created", EventID: uuid.New(), EventVersion: 1, Decider: decider, DeciderID: deciderID,
		Data: json.RawMessage(`{"n":1}`), CommandID: uuid.New(), PreviousID: previous,
	}
}

func appendOne(t *testing.T, s *store.Store, e store.NewEvent) store.Event {
	t.Helper()
	res, err := s.AppendEvents(ctx, []store.NewEvent{e})
	require.NoError(t, err)
	require.Len(t, res.Events, 1)
	return res.Events[0]
}

// chain appends n events to one stream, in batches, and returns the last.
func chain(t *testing.T, s *store.Store, decider, deciderID string, n int) store.Event {
	t.Helper()
	var prev *uuid.UUID
	var last store.Event
	for n > 0 {
		size := min(n, 500)
		batch := make([]store.NewEvent, size)
		for i := range batch {
			batch[i] = ev(decider, deciderID, prev)
			id := batch[i].EventID
			prev = &id
		}
		res, err := s.AppendEvents(ctx, batch)
		require.NoError(t, err)
		last = res.Events[size-1]
		n -= size
	}
	return last
}

func ptr(id uuid.UUID) *uuid.UUID { return &id }

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
