package store_test

import (
	"sync"
	"testing"
	"testing/fstest"

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
