package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// The two append paths — the Go store's own INSERTs, and the SQL function
// append_event that fstore-sql users call — must answer every case alike:
// the rules live in the table's constraints and triggers, which both paths
// hit, and the identical-retry comparison is written once per path. The
// same scenario runs through both, on streams of their own, and must give
// the same outcomes (see the package comment for the rule).
func TestAppendPathsAgree(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created", "shipped")
	conn, err := pgx.Connect(ctx, storetest.URL(t, s))
	require.NoError(t, err)
	defer conn.Close(ctx)

	goPath := func(e store.NewEvent) (store.Event, string) {
		res, err := s.AppendEvents(ctx, []store.NewEvent{e})
		if err != nil {
			return store.Event{}, sentinelName(err)
		}
		if !res.Created {
			return res.Events[0], "replayed"
		}
		return res.Events[0], "stored"
	}
	known := map[uuid.UUID]int64{} // event_id → offset, of the SQL path's events
	sqlPath := func(e store.NewEvent) (store.Event, string) {
		var got store.Event
		var data []byte
		err := conn.QueryRow(ctx, `SELECT event, event_id, event_version, decider, decider_id, data, command_id,
			previous_id, final, created_at, "offset" FROM append_event($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			e.Event, e.EventID, e.Decider, e.DeciderID, string(e.Data), e.CommandID, e.PreviousID, e.EventVersion, e.Final).
			Scan(&got.Event, &got.EventID, &got.EventVersion, &got.Decider, &got.DeciderID, &data, &got.CommandID,
				&got.PreviousID, &got.Final, &got.CreatedAt, &got.Offset)
		got.Data = data
		if err != nil {
			return store.Event{}, sqlStateName(err)
		}
		if off, ok := known[got.EventID]; ok && off == got.Offset {
			return got, "replayed"
		}
		known[got.EventID] = got.Offset
		return got, "stored"
	}

	scenario := func(path func(store.NewEvent) (store.Event, string), suffix string) []string {
		stream, other := "o-"+suffix, "other-"+suffix
		first := ev("order", stream, nil)
		next := ev("order", stream, ptr(first.EventID))
		elsewhere := ev("order", other, nil)
		closing := ev("order", stream, ptr(next.EventID))
		closing.Final = true
		changed := first
		changed.Data = json.RawMessage(`{"changed":true}`)
		unregistered := ev("order", "u-"+suffix, nil)
		unregistered.Event = "cancelled"
		version2 := ev("order", "v-"+suffix, nil)
		version2.EventVersion = 2
		steps := []struct {
			name string
			e    store.NewEvent
		}{
			{"first event", first},
			{"identical retry", first},
			{"same event_id, other content", changed},
			{"next event", next},
			{"null previous_id on a non-empty stream", ev("order", stream, nil)},
			{"previous_id not the last event", ev("order", stream, ptr(first.EventID))},
			{"other stream's first", elsewhere},
			{"previous_id of another stream", ev("order", stream+"-x", ptr(elsewhere.EventID))},
			{"closing event", closing},
			{"after a final event", ev("order", stream, ptr(closing.EventID))},
			{"unregistered type", unregistered},
			{"unregistered version", version2},
		}
		var out []string
		var stored store.Event
		for _, st := range steps {
			got, outcome := path(st.e)
			if st.name == "first event" {
				stored = got
			}
			if st.name == "identical retry" {
				assert.Equal(t, stored.Offset, got.Offset, "%s: a retry returns the stored event", suffix)
			}
			out = append(out, st.name+": "+outcome)
		}
		return out
	}
	viaGo, viaSQL := scenario(goPath, "go"), scenario(sqlPath, "sql")
	assert.Equal(t, viaGo, viaSQL, "the Go store and append_event answer alike")
	assert.Contains(t, viaGo, "after a final event: stream-final")
}

// sentinelName names the store sentinel err wraps.
func sentinelName(err error) string {
	for name, s := range map[string]error{
		"concurrency-conflict": store.ErrConcurrencyConflict, "stream-final": store.ErrStreamFinal,
		"duplicate-event-id": store.ErrDuplicateEventID, "not-registered": store.ErrNotRegistered,
		"invalid": store.ErrInvalid,
	} {
		if errors.Is(err, s) {
			return name
		}
	}
	return "error: " + err.Error()
}

// sqlStateName names the outcome an SQL user sees, by SQLSTATE and
// constraint, as docs/fstore-sql.md tells them to read it.
func sqlStateName(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return "error: " + err.Error()
	}
	switch {
	case pgErr.Code == "FS001", pgErr.Code == "23505" &&
		(pgErr.ConstraintName == "events_previous_id_key" || pgErr.ConstraintName == "events_stream_first_key"):
		return "concurrency-conflict"
	case pgErr.Code == "FS002":
		return "stream-final"
	case pgErr.Code == "FS003":
		return "duplicate-event-id"
	case pgErr.Code == "FS005":
		return "not-registered"
	}
	return fmt.Sprintf("SQLSTATE %s: %s", pgErr.Code, pgErr.Message)
}
