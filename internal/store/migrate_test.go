package store_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
	fstoresql "github.com/fstore/fstore/sql"
)

// Several instances starting at once on an empty database: every migration
// runs exactly once and all of them start.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewEmptyDatabase(t)
	latest, err := store.LatestVersion(fstoresql.Migrations)
	require.NoError(t, err)

	const instances = 6
	applied := make([][]int, instances)
	errs := make([]error, instances)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range instances {
		s, err := store.Open(ctx, dbURL)
		require.NoError(t, err)
		t.Cleanup(s.Close)
		wg.Go(func() {
			<-start
			applied[i], errs[i] = s.Migrate(ctx, fstoresql.Migrations)
		})
	}
	close(start)
	wg.Wait()

	var total []int
	for i := range instances {
		require.NoError(t, errs[i])
		total = append(total, applied[i]...)
	}
	ms, err := store.LoadMigrations(fstoresql.Migrations)
	require.NoError(t, err)
	assert.Len(t, total, len(ms), "each migration applied once")

	s, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	defer s.Close()
	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, latest, v)
}

// A later migration upgrades a database that has the earlier ones.
func TestMigrateUpgrades(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewEmptyDatabase(t)
	s, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	defer s.Close()

	v1 := fstest.MapFS{"0001_a.sql": {Data: []byte(`CREATE TABLE a (x int);`)}}
	got, err := s.Migrate(ctx, v1)
	require.NoError(t, err)
	assert.Equal(t, []int{1}, got)

	v2 := fstest.MapFS{
		"0001_a.sql": v1["0001_a.sql"],
		"0002_b.sql": {Data: []byte(`ALTER TABLE a ADD COLUMN y int; CREATE TABLE b (z int);`)},
	}
	got, err = s.Migrate(ctx, v2)
	require.NoError(t, err)
	assert.Equal(t, []int{2}, got)
	got, err = s.Migrate(ctx, v2)
	require.NoError(t, err)
	assert.Empty(t, got)

	_, err = store.LoadMigrations(fstest.MapFS{"one.sql": {Data: []byte(`SELECT 1`)}})
	assert.Error(t, err, "misnamed migration")
}

// Migration 0009 (view_status) counts the partitions of views registered
// before it: the streams in scope, not those a change of lists put out of
// scope.
func TestMigrationCountsExistingPartitions(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewEmptyDatabase(t)
	s, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	defer s.Close()
	all, err := store.LoadMigrations(fstoresql.Migrations)
	require.NoError(t, err)
	counting := slices.IndexFunc(all, func(m store.Migration) bool { return m.Name == "view_status" })
	require.GreaterOrEqual(t, counting, 0)
	before := fstest.MapFS{}
	for _, m := range all[:counting] {
		before[fmt.Sprintf("%04d_%s.sql", m.Version, m.Name)] = &fstest.MapFile{Data: []byte(m.SQL)}
	}
	_, err = s.Migrate(ctx, before)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, sql := range []string{ // one transaction each: discovery sees committed events only
		`INSERT INTO deciders (decider, event) VALUES ('order', 'created'), ('invoice', 'created')`,
		`INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
		 SELECT 'created', gen_random_uuid(), CASE WHEN i % 3 = 0 THEN 'invoice' ELSE 'order' END, 's' || i, '{}',
		        gen_random_uuid(), NULL
		 FROM generate_series(1, 30) i`,
		`SELECT count(*) FROM register_view('all', now() - interval '1 hour')`,
		`SELECT count(*) FROM register_view('moved', now() - interval '1 hour', v_deciders => ARRAY['order'])`,
		`SELECT fstore_discover('all'), fstore_discover('moved')`,
		`SELECT count(*) FROM register_view('moved', now() - interval '1 hour', v_deciders => ARRAY['invoice'])`,
	} {
		_, err = conn.Exec(ctx, sql)
		require.NoError(t, err)
	}
	applied, err := s.Migrate(ctx, fstoresql.Migrations)
	require.NoError(t, err)
	require.Contains(t, applied, all[counting].Version)
	counts := map[string]int64{}
	rows, err := conn.Query(ctx, `SELECT view, partitions FROM views`)
	require.NoError(t, err)
	for rows.Next() {
		var v string
		var n int64
		require.NoError(t, rows.Scan(&v, &n))
		counts[v] = n
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, map[string]int64{"all": 30, "moved": 0}, counts, "moved: every order stream out of scope, invoice not discovered yet")
	moved, err := s.GetView(ctx, "moved")
	require.NoError(t, err)
	assert.Equal(t, int64(10), moved.Status.Partitions, "discovery counts the invoice streams")
}
