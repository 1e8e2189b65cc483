package store_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

func pushView(t *testing.T, s *store.Store, name string, secret *string) store.View {
	t.Helper()
	url := "https://example.com/" + name
	v, _, err := s.RegisterView(ctx, store.ViewRegistration{View: name, StartAt: past(), LockTimeoutS: 60,
		EdgeFunctionURL: &url, Secret: secret})
	require.NoError(t, err)
	return v
}

func TestFailuresParkAPartition(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	e := appendOne(t, s, ev("order", "o", nil))
	pushView(t, s, "hooks", nil)
	f := store.Failure{Error: "HTTP 500", Status: 500, MaxAttempts: 3, MaxAge: time.Hour}

	for attempt := 1; attempt <= 3; attempt++ {
		got := lease(t, s, "hooks", 1, 1)
		require.Len(t, got, 1, "attempt %d", attempt)
		assert.Equal(t, attempt-1, got[0].Attempts, "the lease tells the failures so far")
		f.RetryAt = time.Now() // due at once, for the test
		settled := store.Settlement{Failure: &f, Attempts: []store.Attempt{failedPush(got[0], 500, "boom")}}
		p, err := s.SettlePush(ctx, "hooks", "order", "o", got[0].LeaseID, settled)
		require.NoError(t, err)
		assert.Equal(t, attempt, p.Attempts)
		assert.Equal(t, attempt == 3, p.Parked, "parked after 3 attempts")
		_, err = s.SettlePush(ctx, "hooks", "order", "o", got[0].LeaseID, settled)
		assert.ErrorIs(t, err, store.ErrLeaseLost, "fenced")
	}
	assert.Empty(t, lease(t, s, "hooks", 1, 1), "a parked partition is not leased")
	v, err := s.GetView(ctx, "hooks")
	require.NoError(t, err)
	assert.Equal(t, int64(1), v.Status.PartitionsParked)
	assert.Equal(t, int64(1), v.Status.PartitionsFailing)
	require.NotNil(t, v.Status.LastError)
	assert.Equal(t, "HTTP 500", v.Status.LastError.Error)
	attempts, err := s.Attempts(ctx, "hooks", "order", "o", 10)
	require.NoError(t, err)
	require.Len(t, attempts, 3, "every push recorded")
	assert.Equal(t, e.EventID, *attempts[0].EventID)
	assert.Equal(t, 500, *attempts[0].Status)
	assert.Equal(t, "boom", *attempts[0].Response)

	p, err := s.RetryPartition(ctx, "hooks", "order", "o")
	require.NoError(t, err)
	assert.False(t, p.Parked)
	assert.Zero(t, p.Attempts)
	require.NotNil(t, p.LastError, "un-parking is not a delivery: the failure is still the current one")
	got := lease(t, s, "hooks", 1, 1)
	require.Len(t, got, 1, "un-parked: delivered again")
	ok := 200
	p, err = s.SettlePush(ctx, "hooks", "order", "o", got[0].LeaseID, store.Settlement{AckedOffset: got[0].Offset,
		Attempts: []store.Attempt{{At: time.Now(), Kind: "push", EventID: &got[0].EventID, Offset: &got[0].Offset, Status: &ok}}})
	require.NoError(t, err)
	assert.Nil(t, p.LastError, "delivered: the failure is over")
	assert.Nil(t, p.LastStatus)
	assert.Nil(t, p.LastErrorAt)
	v, err = s.GetView(ctx, "hooks")
	require.NoError(t, err)
	assert.Nil(t, v.Status.LastError, "the view's last error follows its failing partitions")
	_, err = s.RetryPartition(ctx, "hooks", "order", "nope")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func failedPush(e store.LeasedEvent, status int, body string) store.Attempt {
	why := fmt.Sprintf("HTTP %d", status)
	return store.Attempt{At: time.Now(), Kind: "push", EventID: &e.EventID, Offset: &e.Offset, DurationMs: 1.5,
		Status: &status, Error: &why, Response: &body}
}

// Attempts keep the last 100 of a partition, and a response is cut to 1 KiB
// of valid text, whatever the receiver sent.
func TestAttemptsAreBounded(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	appendOne(t, s, ev("order", "o", nil))
	pushView(t, s, "hooks", nil)
	f := store.Failure{Error: "HTTP 500", Status: 500, MaxAttempts: 1000, MaxAge: time.Hour, RetryAt: time.Now()}
	for round := 0; round < 16; round++ {
		got := lease(t, s, "hooks", 1, 1)
		require.Len(t, got, 1)
		batch := make([]store.Attempt, 10)
		for i := range batch {
			batch[i] = failedPush(got[0], 500, strings.Repeat("é", 600)+"\x00\xff")
		}
		_, err := s.SettlePush(ctx, "hooks", "order", "o", got[0].LeaseID, store.Settlement{Failure: &f, Attempts: batch})
		require.NoError(t, err)
	}
	attempts, err := s.Attempts(ctx, "hooks", "order", "o", 1000)
	require.NoError(t, err)
	assert.Len(t, attempts, 100, "the last 100 only")
	assert.LessOrEqual(t, len(*attempts[0].Response), store.MaxAttemptResponse)
	assert.True(t, utf8.ValidString(*attempts[0].Response))
	var stored int
	require.NoError(t, connect(t, s).QueryRow(ctx, `SELECT sum(n) FROM view_attempts`).Scan(&stored))
	assert.Equal(t, 110, stored, "160 recorded, those before the last 100 pruned at the 150th")

	n, err := s.PruneAttempts(ctx, time.Now().Add(time.Minute), 3)
	require.NoError(t, err)
	assert.Equal(t, int64(3), n, "pruned by age, in bounded batches")
	attempts, err = s.Attempts(ctx, "hooks", "order", "o", 1000)
	require.NoError(t, err)
	assert.Len(t, attempts, 80, "three leases' pushes")
}

func TestPushViewsRotationAndDisabling(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	first := pushView(t, s, "hooks", nil)
	require.NotNil(t, first.Secret)
	registerView(t, s, "polled", nil, 60)

	views, err := s.PushViews(ctx)
	require.NoError(t, err)
	require.Len(t, views, 1, "only views with a URL")
	assert.Equal(t, []string{*first.Secret}, views[0].Secrets)
	assert.Equal(t, time.Minute, views[0].LockTimeout)

	rotated := "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("r", 32)))
	pushView(t, s, "hooks", &rotated)
	views, err = s.PushViews(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{rotated, *first.Secret}, views[0].Secrets, "the old secret signs too for a while")

	require.NoError(t, s.DisableDispatch(ctx, "hooks", "410 Gone"))
	views, err = s.PushViews(ctx)
	require.NoError(t, err)
	assert.Empty(t, views)
	v, err := s.GetView(ctx, "hooks")
	require.NoError(t, err)
	require.NotNil(t, v.DispatchDisabledReason)
	assert.Equal(t, "410 Gone", *v.DispatchDisabledReason)
	pushView(t, s, "hooks", nil)
	views, err = s.PushViews(ctx)
	require.NoError(t, err)
	assert.Len(t, views, 1, "registering again enables it")
	assert.ErrorIs(t, s.DisableDispatch(ctx, "nope", "x"), store.ErrNotFound)
}

// A URL stored with credentials (before registration refused them, or by
// SQL) is never shown with them; the dispatcher still gets it whole.
func TestStoredCredentialsAreNotShown(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	url := "https://alice:s3cr3t@hooks.example/x"
	_, _, err := s.RegisterView(ctx, store.ViewRegistration{View: "hooks", LockTimeoutS: 60, EdgeFunctionURL: &url})
	require.NoError(t, err)
	v, err := s.GetView(ctx, "hooks")
	require.NoError(t, err)
	assert.Equal(t, "https://hooks.example/x", *v.EdgeFunctionURL)
	views, err := s.ListViews(ctx)
	require.NoError(t, err)
	assert.Equal(t, "https://hooks.example/x", *views[0].EdgeFunctionURL)
	push, err := s.PushViews(ctx)
	require.NoError(t, err)
	assert.Equal(t, url, push[0].URL)
}
