package store_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

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
	appendOne(t, s, ev("order", "o", nil))
	pushView(t, s, "hooks", nil)
	f := store.Failure{Error: "HTTP 500", Status: 500, MaxAttempts: 3, MaxAge: time.Hour}

	for attempt := 1; attempt <= 3; attempt++ {
		got := lease(t, s, "hooks", 1, 1)
		require.Len(t, got, 1, "attempt %d", attempt)
		f.RetryAt = time.Now() // due at once, for the test
		p, err := s.RecordFailure(ctx, "hooks", "order", "o", got[0].LeaseID, f)
		require.NoError(t, err)
		assert.Equal(t, attempt, p.Attempts)
		assert.Equal(t, attempt == 3, p.Parked, "parked after 3 attempts")
		_, err = s.RecordFailure(ctx, "hooks", "order", "o", got[0].LeaseID, f)
		assert.ErrorIs(t, err, store.ErrLeaseLost, "fenced")
	}
	assert.Empty(t, lease(t, s, "hooks", 1, 1), "a parked partition is not leased")
	v, err := s.GetView(ctx, "hooks")
	require.NoError(t, err)
	assert.Equal(t, int64(1), v.Status.PartitionsParked)
	require.NotNil(t, v.Status.LastError)
	assert.Equal(t, "HTTP 500", v.Status.LastError.Error)

	p, err := s.RetryPartition(ctx, "hooks", "order", "o")
	require.NoError(t, err)
	assert.False(t, p.Parked)
	assert.Zero(t, p.Attempts)
	assert.Len(t, lease(t, s, "hooks", 1, 1), 1, "un-parked: delivered again")
	_, err = s.RetryPartition(ctx, "hooks", "order", "nope")
	assert.ErrorIs(t, err, store.ErrNotFound)
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
