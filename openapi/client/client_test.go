package client_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store/storetest"
	"github.com/fstore/fstore/openapi/client"
)

func ptr[T any](v T) *T { return &v }

// A whole scenario through the client generated from the committed document:
// register, append, conflict, batch, paged reads, a view, stream, ack, nack,
// status. If the generator could not express something, the document is
// what to fix.
func TestGeneratedClientScenario(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t)
	srv := httptest.NewServer(httpapi.NewServer(st, httpapi.Options{}).Handler())
	defer srv.Close()
	c, err := client.NewClientWithResponses(srv.URL)
	require.NoError(t, err)

	for _, ev := range []string{"placed", "shipped"} {
		r, err := c.RegisterEventTypeWithResponse(ctx, "order", client.RegisterEventTypeRequest{Event: ev, Description: ptr("an order was " + ev)})
		require.NoError(t, err)
		require.NotNil(t, r.JSON201, "%s", r.Body)
		assert.Equal(t, ev, r.JSON201.Event)
	}
	d, err := c.GetDeciderWithResponse(ctx, "order")
	require.NoError(t, err)
	require.NotNil(t, d.JSON200)
	assert.Len(t, d.JSON200.Events, 2)

	first := uuid.New()
	a, err := c.AppendEventWithResponse(ctx, client.AppendEventRequest{
		Event: "placed", EventId: first, Decider: "order", DeciderId: "o-1",
		Data: map[string]any{"total": 42}, CommandId: uuid.New(), PreviousId: nil,
		Metadata: &map[string]any{"user": "ada"}, Tags: &[]string{"order:o-1", "customer:c-7"},
	})
	require.NoError(t, err)
	require.NotNil(t, a.JSON201, "%s", a.Body)
	assert.Nil(t, a.JSON201.PreviousId)
	assert.Positive(t, a.JSON201.Offset)
	assert.Equal(t, map[string]any{"user": "ada"}, a.JSON201.Metadata)
	assert.Equal(t, []string{"customer:c-7", "order:o-1"}, a.JSON201.Tags, "stored sorted")

	// A second first event: the conflict, decoded, names the stream's last event.
	conflict, err := c.AppendEventWithResponse(ctx, client.AppendEventRequest{
		Event: "placed", EventId: uuid.New(), Decider: "order", DeciderId: "o-1",
		Data: map[string]any{}, CommandId: uuid.New(), PreviousId: nil,
	})
	require.NoError(t, err)
	require.NotNil(t, conflict.ApplicationproblemJSON409, "%s", conflict.Body)
	assert.Equal(t, "urn:fstore:problem:concurrency-conflict", conflict.ApplicationproblemJSON409.Type)
	require.NotNil(t, conflict.ApplicationproblemJSON409.LastEventId)
	assert.Equal(t, first, *conflict.ApplicationproblemJSON409.LastEventId)

	second := uuid.New()
	b, err := c.AppendEventsWithResponse(ctx, client.AppendBatchRequest{Events: []client.AppendEventRequest{
		{Event: "shipped", EventId: second, Decider: "order", DeciderId: "o-1", Data: "a string is data too",
			CommandId: uuid.New(), PreviousId: &first, Final: ptr(true)},
		{Event: "placed", EventId: uuid.New(), Decider: "order", DeciderId: "o-2", Data: []any{1, 2}, CommandId: uuid.New()},
	}})
	require.NoError(t, err)
	require.NotNil(t, b.JSON201, "%s", b.Body)
	assert.Len(t, b.JSON201.Events, 2)
	assert.True(t, b.JSON201.Events[0].Final)

	// Paged reads of the whole log.
	var seen []uuid.UUID
	var after *int64
	for {
		page, err := c.ReadEventsWithResponse(ctx, &client.ReadEventsParams{After: after, Limit: ptr(1)})
		require.NoError(t, err)
		require.NotNil(t, page.JSON200, "%s", page.Body)
		for _, e := range page.JSON200.Events {
			seen = append(seen, e.EventId)
		}
		if page.JSON200.NextAfter == nil {
			break
		}
		after = page.JSON200.NextAfter
	}
	assert.Len(t, seen, 3)

	// Events of some types; then the same followed live as NDJSON, each
	// line a LiveLine.
	typed, err := c.ReadEventsWithResponse(ctx, &client.ReadEventsParams{Events: ptr("shipped")})
	require.NoError(t, err)
	require.NotNil(t, typed.JSON200, "%s", typed.Body)
	require.Len(t, typed.JSON200.Events, 1)
	live, err := c.ReadEvents(ctx, &client.ReadEventsParams{Events: ptr("shipped")}, func(_ context.Context, req *http.Request) error {
		req.Header.Set("Accept", "application/x-ndjson")
		return nil
	})
	require.NoError(t, err)
	line, err := bufio.NewReader(live.Body).ReadBytes('\n')
	require.NoError(t, err)
	live.Body.Close()
	var ll client.LiveLine
	require.NoError(t, ll.UnmarshalJSON(line))
	followed, err := ll.AsEvent()
	require.NoError(t, err)
	assert.Equal(t, second, followed.EventId)

	// A view: register, stream, ack, nack, status.
	start := time.Now().Add(-time.Hour)
	v, err := c.RegisterViewWithResponse(ctx, "orders", client.RegisterViewRequest{StartAt: &start, LockTimeoutS: ptr(30)})
	require.NoError(t, err)
	require.NotNil(t, v.JSON201, "%s", v.Body)
	s, err := c.StreamEventsWithResponse(ctx, "orders", client.StreamRequest{Limit: ptr(10), MaxPerPartition: ptr(10)})
	require.NoError(t, err)
	require.NotNil(t, s.JSON200, "%s", s.Body)
	require.Len(t, s.JSON200.Events, 3)
	assert.Equal(t, []string{"customer:c-7", "order:o-1"}, s.JSON200.Events[0].Tags, "leases carry tags")
	assert.Equal(t, map[string]any{}, s.JSON200.Events[2].Metadata, "{} when none")
	byStream := map[string]client.LeasedEvent{}
	for _, e := range s.JSON200.Events {
		byStream[e.DeciderId] = e // the last of each partition
	}
	o1, o2 := byStream["o-1"], byStream["o-2"]
	ack, err := c.AckEventWithResponse(ctx, "orders", client.AckRequest{Decider: "order", DeciderId: "o-1", Offset: o1.Offset, LeaseId: o1.LeaseId})
	require.NoError(t, err)
	require.NotNil(t, ack.JSON200, "%s", ack.Body)
	assert.Equal(t, o1.Offset, ack.JSON200.AckedOffset)
	stale, err := c.AckEventWithResponse(ctx, "orders", client.AckRequest{Decider: "order", DeciderId: "o-2", Offset: o2.Offset, LeaseId: uuid.New()})
	require.NoError(t, err)
	require.NotNil(t, stale.ApplicationproblemJSON409, "%s", stale.Body)
	assert.Equal(t, "urn:fstore:problem:lease-lost", stale.ApplicationproblemJSON409.Type)
	nack, err := c.NackEventWithResponse(ctx, "orders", client.NackRequest{Decider: "order", DeciderId: "o-2", LeaseId: o2.LeaseId, RetryAfterMs: ptr(0)})
	require.NoError(t, err)
	require.NotNil(t, nack.JSON200, "%s", nack.Body)
	status, err := c.GetViewWithResponse(ctx, "orders")
	require.NoError(t, err)
	require.NotNil(t, status.JSON200, "%s", status.Body)
	assert.EqualValues(t, 1, status.JSON200.Status.EventsPending)
	assert.EqualValues(t, 2, status.JSON200.Status.Partitions)

	// A scoped view, and the dead-letter routes: a nack that says why, the
	// failing list, one partition, its attempts, skip, replay, bulk retry.
	scopedView, err := c.RegisterViewWithResponse(ctx, "shipments", client.RegisterViewRequest{StartAt: &start,
		Deciders: &[]string{"order"}, Events: &[]string{"shipped"}})
	require.NoError(t, err)
	require.NotNil(t, scopedView.JSON201, "%s", scopedView.Body)
	assert.Equal(t, []string{"shipped"}, *scopedView.JSON201.Events)
	assert.EqualValues(t, 1, scopedView.JSON201.Status.Partitions, "o-1 only holds a shipped event")
	again, err := c.StreamEventsWithResponse(ctx, "orders", client.StreamRequest{})
	require.NoError(t, err)
	require.Len(t, again.JSON200.Events, 1)
	o2 = again.JSON200.Events[0]
	nack, err = c.NackEventWithResponse(ctx, "orders", client.NackRequest{Decider: "order", DeciderId: "o-2", LeaseId: o2.LeaseId,
		Error: ptr("projection store is down")})
	require.NoError(t, err)
	require.NotNil(t, nack.JSON200, "%s", nack.Body)
	failing, err := c.ListPartitionsWithResponse(ctx, "orders", &client.ListPartitionsParams{State: ptr(client.Failing)})
	require.NoError(t, err)
	require.NotNil(t, failing.JSON200, "%s", failing.Body)
	require.Len(t, failing.JSON200.Partitions, 1)
	assert.Equal(t, "projection store is down", *failing.JSON200.Partitions[0].LastError)
	one, err := c.GetPartitionWithResponse(ctx, "orders", "order", "o-2")
	require.NoError(t, err)
	require.NotNil(t, one.JSON200.NextEvent, "%s", one.Body)
	attempts, err := c.ListAttemptsWithResponse(ctx, "orders", "order", "o-2", &client.ListAttemptsParams{Limit: ptr(5)})
	require.NoError(t, err)
	require.Len(t, attempts.JSON200.Attempts, 1, "%s", attempts.Body)
	skipped, err := c.SkipEventWithResponse(ctx, "orders", "order", "o-2", client.SkipRequest{Offset: one.JSON200.NextEvent.Offset})
	require.NoError(t, err)
	require.NotNil(t, skipped.JSON200, "%s", skipped.Body)
	assert.Nil(t, skipped.JSON200.NextEvent, "caught up")
	replayed, err := c.ReplayPartitionWithResponse(ctx, "orders", "order", "o-2", client.ReplayRequest{After: 0})
	require.NoError(t, err)
	require.NotNil(t, replayed.JSON200, "%s", replayed.Body)
	assert.EqualValues(t, 1, replayed.JSON200.EventsPending)
	retried, err := c.RetryParkedWithResponse(ctx, "orders")
	require.NoError(t, err)
	require.NotNil(t, retried.JSON200, "%s", retried.Body)
	assert.Zero(t, retried.JSON200.Retried)

	// By tag: a query item's tags, and the log read with tag=.
	tagged, err := c.QueryEventsWithResponse(ctx, nil, client.QueryEventsRequest{Query: client.EventQuery{
		Items: []client.QueryItem{{Types: &[]string{"placed"}, Tags: &[]string{"customer:c-7"}}}}})
	require.NoError(t, err)
	require.NotNil(t, tagged.JSON200, "%s", tagged.Body)
	require.Len(t, tagged.JSON200.Events, 1)
	assert.Equal(t, first, tagged.JSON200.Events[0].EventId)
	byTag, err := c.ReadEventsWithResponse(ctx, &client.ReadEventsParams{Tag: &[]string{"order:o-1", "customer:c-7"}})
	require.NoError(t, err)
	require.NotNil(t, byTag.JSON200, "%s", byTag.Body)
	require.Len(t, byTag.JSON200.Events, 1)

	// A decision across streams: query, then append on its position.
	shipped := client.EventQuery{Items: []client.QueryItem{{Types: &[]string{"shipped"}}}}
	q, err := c.QueryEventsWithResponse(ctx, nil, client.QueryEventsRequest{Query: shipped})
	require.NoError(t, err)
	require.NotNil(t, q.JSON200, "%s", q.Body)
	require.Len(t, q.JSON200.Events, 1)
	assert.Nil(t, q.JSON200.NextAfter)
	before := q.JSON200.Events[0].Offset - 1
	for after, wantStatus := range map[int64]int{before: 409, q.JSON200.Position: 201} {
		r, err := c.AppendEventsWithResponse(ctx, client.AppendBatchRequest{
			Events: []client.AppendEventRequest{{Event: "placed", EventId: uuid.New(), Decider: "order",
				DeciderId: fmt.Sprintf("o-%d", 10+after), Data: map[string]any{}, CommandId: uuid.New()}},
			Condition: &client.AppendCondition{Query: shipped, After: after},
		})
		require.NoError(t, err)
		require.Equal(t, wantStatus, r.StatusCode(), "%s", r.Body)
		if wantStatus == 409 {
			assert.Equal(t, "urn:fstore:problem:condition-failed", r.ApplicationproblemJSON409.Type)
			assert.Equal(t, q.JSON200.Events[0].Offset, *r.ApplicationproblemJSON409.Offset)
		}
	}

	// The server's status: the log's newest offset, this key's access.
	ss, err := c.GetStatusWithResponse(ctx)
	require.NoError(t, err)
	require.NotNil(t, ss.JSON200, "%s", ss.Body)
	assert.Equal(t, client.ReadWrite, ss.JSON200.Access)
	assert.Positive(t, ss.JSON200.Log.LastOffset)
	assert.Empty(t, ss.JSON200.Dispatchers)
}
