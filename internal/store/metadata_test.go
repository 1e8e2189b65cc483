package store_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
	fstoresql "github.com/fstore/fstore/sql"
)

// tagged is ev with metadata and tags given out of order, with a duplicate.
func tagged(decider, deciderID string, previous *uuid.UUID) store.NewEvent {
	e := ev(decider, deciderID, previous)
	e.Metadata = json.RawMessage(`{"user": "ada", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`)
	e.Tags = []string{"stream:" + deciderID, "b:2", "a:1", "b:2", "Ä", "Z"}
	return e
}

func wantTags(deciderID string) []string {
	return []string{"Z", "a:1", "b:2", "stream:" + deciderID, "Ä"} // byte order: Z < a < s < Ä
}

func requireExtras(t *testing.T, want store.NewEvent, got store.Event) {
	t.Helper()
	assert.JSONEq(t, string(want.Metadata), string(got.Metadata), "metadata of %s", got.EventID)
	assert.Equal(t, store.NormalizeTags(want.Tags), got.Tags, "tags of %s", got.EventID)
}

// Metadata and tags are stored by every append path and returned by every
// read; events without them read as {} and [].
func TestMetadataAndTagsEverywhere(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")

	single := tagged("order", "o-1", nil)
	got := appendOne(t, s, single)
	assert.Equal(t, wantTags("o-1"), got.Tags)
	requireExtras(t, single, got)

	batch := []store.NewEvent{tagged("order", "o-1", &single.EventID), ev("order", "o-2", nil)}
	res, err := s.AppendEvents(ctx, batch)
	require.NoError(t, err)
	requireExtras(t, batch[0], res.Events[0])
	plain := res.Events[1]
	assert.JSONEq(t, `{}`, string(plain.Metadata))
	assert.Equal(t, []string{}, plain.Tags)
	out, err := json.Marshal(plain)
	require.NoError(t, err)
	assert.Contains(t, string(out), `"metadata":{}`)
	assert.Contains(t, string(out), `"tags":[]`)

	conditional := tagged("order", "o-3", nil)
	res, err = s.AppendEventsIf(ctx, []store.NewEvent{conditional}, store.Condition{Query: bookQuery("none"), After: 0})
	require.NoError(t, err)
	requireExtras(t, conditional, res.Events[0])

	byID := map[uuid.UUID]store.NewEvent{single.EventID: single, batch[0].EventID: batch[0], conditional.EventID: conditional}
	check := func(where string, evs ...store.Event) {
		t.Helper()
		n := 0
		for _, e := range evs {
			if want, ok := byID[e.EventID]; ok {
				requireExtras(t, want, e)
				n++
			}
		}
		assert.Positive(t, n, "%s returned no tagged event", where)
	}
	stream, err := s.ReadEvents(ctx, store.ReadQuery{Decider: "order", DeciderID: "o-1", Limit: 10})
	require.NoError(t, err)
	check("a stream", stream...)
	decider, err := s.ReadEvents(ctx, store.ReadQuery{Decider: "order", Limit: 10})
	require.NoError(t, err)
	check("a decider", decider...)
	log, err := s.ReadEvents(ctx, store.ReadQuery{Limit: 10})
	require.NoError(t, err)
	check("the log", log...)
	last, err := s.LastEvent(ctx, "order", "o-1")
	require.NoError(t, err)
	check("the last event", last)
	one, err := s.GetEvent(ctx, single.EventID)
	require.NoError(t, err)
	check("one event", one)
	q, err := s.QueryEvents(ctx, store.Query{Items: []store.QueryItem{{Types: []string{"created"}}}}, 0, 10)
	require.NoError(t, err)
	check("a query", q.Events...)

	start := time.Now().Add(-time.Hour)
	_, _, err = s.RegisterView(ctx, store.ViewRegistration{View: "v", StartAt: &start, LockTimeoutS: 60})
	require.NoError(t, err)
	leased, err := s.LeaseEvents(ctx, "v", store.LeaseRequest{Limit: 10, MaxPerPartition: 10})
	require.NoError(t, err)
	var leasedEvents []store.Event
	for _, le := range leased {
		leasedEvents = append(leasedEvents, le.Event)
	}
	check("a lease", leasedEvents...)
}

// A retry is identical when its tags are the same in any order, and its
// metadata the same but for the trace context, which a retry brings anew.
// Other tags or other metadata make it another event.
func TestMetadataAndTagsInRetries(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	first := tagged("order", "o-1", nil)
	stored := appendOne(t, s, first)
	batchFirst := tagged("order", "b-1", nil)
	batch := []store.NewEvent{batchFirst, tagged("order", "b-1", &batchFirst.EventID)}
	batchStored, err := s.AppendEvents(ctx, batch)
	require.NoError(t, err)

	retry := func(e store.NewEvent) store.NewEvent {
		e.Tags = []string{"a:1", "Ä", "Z", "stream:" + e.DeciderID, "b:2"}
		e.Metadata = json.RawMessage(`{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "x=1", "user":"ada"}`)
		return e
	}
	res, err := s.AppendEvents(ctx, []store.NewEvent{retry(first)})
	require.NoError(t, err)
	assert.False(t, res.Created)
	assert.Equal(t, stored, res.Events[0], "the stored event, with its own trace context")
	res, err = s.AppendEvents(ctx, []store.NewEvent{retry(batch[0]), retry(batch[1])})
	require.NoError(t, err)
	assert.False(t, res.Created)
	assert.Equal(t, batchStored.Events, res.Events)
	res, err = s.AppendEventsIf(ctx, []store.NewEvent{retry(batch[0]), retry(batch[1])}, store.Condition{Query: bookQuery("x"), After: 0})
	require.NoError(t, err)
	assert.False(t, res.Created)

	for name, change := range map[string]func(*store.NewEvent){
		"a tag more":     func(e *store.NewEvent) { e.Tags = append(e.Tags, "c:3") },
		"a tag less":     func(e *store.NewEvent) { e.Tags = e.Tags[1:] },
		"other metadata": func(e *store.NewEvent) { e.Metadata = json.RawMessage(`{"user":"bob"}`) },
		"no metadata":    func(e *store.NewEvent) { e.Metadata = nil },
	} {
		t.Run(name, func(t *testing.T) {
			other := first
			change(&other)
			_, err := s.AppendEvents(ctx, []store.NewEvent{other})
			assert.ErrorIs(t, err, store.ErrDuplicateEventID)
			otherBatch := slicesClone(batch)
			change(&otherBatch[1])
			_, err = s.AppendEvents(ctx, otherBatch)
			assert.ErrorIs(t, err, store.ErrDuplicateEventID)
		})
	}
}

func slicesClone(evs []store.NewEvent) []store.NewEvent { return append([]store.NewEvent(nil), evs...) }

// The SQL functions take tags and metadata; calls written for 0001 work as
// before; bad tags are refused with invalid_parameter_value.
func TestMetadataAndTagsSQL(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	conn, err := pgx.Connect(ctx, storetest.URL(t, s))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })

	var tags []string
	var metadata string
	require.NoError(t, conn.QueryRow(ctx, `SELECT tags, metadata FROM append_event('created', gen_random_uuid(),
		'order', 'o-1', '{}', gen_random_uuid(), NULL)`).Scan(&tags, &metadata))
	assert.Equal(t, []string{}, tags)
	assert.Equal(t, `{}`, metadata)

	id, cmd := uuid.New(), uuid.New()
	call := `SELECT tags, metadata FROM append_event('created', $1, 'order', 'o-2', '{}', $2, NULL,
		v_tags => $3, v_metadata => $4)`
	require.NoError(t, conn.QueryRow(ctx, call, id, cmd, []string{"b", "a", "b"}, `{"user":"ada","tracestate":"x=1"}`).
		Scan(&tags, &metadata))
	assert.Equal(t, []string{"a", "b"}, tags)
	require.NoError(t, conn.QueryRow(ctx, call, id, cmd, []string{"a", "b"}, `{"user":"ada"}`).Scan(&tags, &metadata))
	assert.JSONEq(t, `{"user":"ada","tracestate":"x=1"}`, metadata, "a retry returns the stored event")
	_, err = conn.Exec(ctx, call, id, cmd, []string{"a"}, `{"user":"ada"}`)
	requireSQLState(t, err, "FS003")

	tooMany := make([]string, 101)
	for i := range tooMany {
		tooMany[i] = fmt.Sprint("t", i)
	}
	for _, bad := range [][]string{{""}, {"a\tb"}, {"x\u0085"}, {strings.Repeat("x", 256)}, tooMany} {
		_, err := conn.Exec(ctx, call, uuid.New(), uuid.New(), bad, `{}`)
		requireSQLState(t, err, "22023")
	}
	_, err = conn.Exec(ctx, call, uuid.New(), uuid.New(), []string{}, `[1]`)
	requireSQLState(t, err, "23514") // metadata must be an object

	q, _ := json.Marshal(bookQuery("c-1"))
	events := fmt.Sprintf(`[{"event":"created","event_id":%q,"decider":"order","decider_id":"o-3","data":{},
		"command_id":%q,"previous_id":null,"tags":["y","x"],"metadata":{"user":"ada"}}]`, uuid.New(), uuid.New())
	require.NoError(t, conn.QueryRow(ctx, `SELECT tags, metadata FROM append_events_if($1, $2, 0)`, events, q).
		Scan(&tags, &metadata))
	assert.Equal(t, []string{"x", "y"}, tags)
	assert.JSONEq(t, `{"user":"ada"}`, metadata)
	_, err = conn.Exec(ctx, `SELECT * FROM append_events_if($1, $2, 0)`,
		fmt.Sprintf(`[{"event":"created","event_id":%q,"decider":"order","decider_id":"o-4","data":{},
		"command_id":%q,"previous_id":null,"tags":[1]}]`, uuid.New(), uuid.New()), q)
	requireSQLState(t, err, "22023")
}

func requireSQLState(t *testing.T, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, code, pgErr.Code, "%s", pgErr.Message)
}

// Adding the columns to a populated log rewrites nothing: the table keeps
// its file, and the events stored before read as {} and [].
func TestMetadataMigrationDoesNotRewrite(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewEmptyDatabase(t)
	s, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	upTo := func(version string) fstest.MapFS {
		fsys := fstest.MapFS{}
		ms, err := store.LoadMigrations(fstoresql.Migrations)
		require.NoError(t, err)
		for _, m := range ms {
			name := fmt.Sprintf("%04d_%s.sql", m.Version, m.Name)
			if name <= version {
				fsys[name] = &fstest.MapFile{Data: []byte(m.SQL)}
			}
		}
		return fsys
	}
	_, err = s.Migrate(ctx, upTo("0003_dcb.sql"))
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	_, err = conn.Exec(ctx, `SELECT register_decider_event('order', 'created');
		SELECT append_event('created', gen_random_uuid(), 'order', 'o-' || i, '{}', gen_random_uuid(), NULL)
		FROM generate_series(1, 100) i`)
	require.NoError(t, err)
	fileOf := func() (file uint32) {
		require.NoError(t, conn.QueryRow(ctx, `SELECT relfilenode FROM pg_class WHERE relname = 'events'`).Scan(&file))
		return file
	}
	before := fileOf()
	_, err = s.Migrate(ctx, upTo("0004_metadata_tags.sql"))
	require.NoError(t, err)
	assert.Equal(t, before, fileOf(), "the events table was rewritten")
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM events WHERE metadata = '{}' AND tags = '{}'`).Scan(&n))
	assert.Equal(t, 100, n)
}
