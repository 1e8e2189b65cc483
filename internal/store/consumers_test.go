package store_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// 4 consumers on their own connections over 20 partitions × 10 events, with
// events still being appended: every event is delivered, and within a
// partition events are processed strictly in order, one consumer at a time.
func TestConcurrentConsumersKeepOrder(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	registerView(t, s, "v", past(), 30)

	const partitions, perPartition, consumers = 20, 10, 4
	want := map[string][]uuid.UUID{}
	appendDone := make(chan struct{})
	go func() {
		defer close(appendDone)
		prev := map[string]*uuid.UUID{}
		for range perPartition {
			for p := range partitions {
				id := fmt.Sprint("p", p)
				e := ev("order", id, prev[id])
				if _, err := s.AppendEvents(ctx, []store.NewEvent{e}); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				prev[id] = &e.EventID
				want[id] = append(want[id], e.EventID)
			}
		}
	}()

	var mu sync.Mutex
	processed := map[string][]uuid.UUID{} // per partition, in the order acks succeeded
	busy := map[string]bool{}             // partitions being processed right now
	var violations []string
	total := 0
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	for c := range consumers {
		cs := storetest.NewStoreOn(t, s)
		wg.Go(func() {
			for time.Now().Before(deadline) {
				mu.Lock()
				finished := total == partitions*perPartition
				mu.Unlock()
				if finished {
					return
				}
				evs, err := cs.LeaseEvents(ctx, "v", store.LeaseRequest{Limit: 3, MaxPerPartition: 1 + c%3})
				if err != nil {
					t.Errorf("lease: %v", err)
					return
				}
				byPartition := map[string][]store.LeasedEvent{}
				for _, e := range evs {
					byPartition[e.DeciderID] = append(byPartition[e.DeciderID], e)
				}
				// Held from the lease until just before the ack that releases it.
				mu.Lock()
				for id := range byPartition {
					if busy[id] {
						violations = append(violations, "two consumers hold "+id)
					}
					busy[id] = true
				}
				mu.Unlock()
				for id, batch := range byPartition {
					last := batch[len(batch)-1]
					// Process while holding the lease: the next lease of the
					// partition exists only after the ack below.
					mu.Lock()
					for _, e := range batch {
						processed[id] = append(processed[id], e.EventID)
						total++
					}
					busy[id] = false
					mu.Unlock()
					if _, err := cs.Ack(ctx, "v", "order", id, last.Offset, last.LeaseID); err != nil {
						t.Errorf("ack: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	<-appendDone
	assert.Empty(t, violations)
	require.Equal(t, partitions*perPartition, total, "every event delivered once: no lease expired")
	for id, ids := range want {
		assert.Equal(t, ids, processed[id], "partition %s processed in order, nothing lost or repeated", id)
	}
}
