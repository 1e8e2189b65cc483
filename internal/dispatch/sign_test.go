package dispatch_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/dispatch"
)

func secret(fill byte) string {
	return "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(fill), 32)))
}

// Signatures are checked by the official Standard Webhooks library, as a
// receiver would check them.
func TestSignaturesVerifyWithTheStandardLibrary(t *testing.T) {
	body := []byte(`{"event":"order_placed","event_id":"5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f60","data":{"total":42}}`)
	id := "5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f60"
	oldSecret, newSecret, otherSecret := secret('o'), secret('n'), secret('x')

	signer, err := dispatch.NewSigner(newSecret)
	require.NoError(t, err)
	h := http.Header{}
	signer.Sign(h, id, time.Now(), body)
	assert.Equal(t, id, h.Get("webhook-id"))
	verify(t, newSecret, body, h, true)
	verify(t, otherSecret, body, h, false)
	verify(t, newSecret, append([]byte{}, append(body, ' ')...), h, false) // a changed body

	// During a rotation both secrets sign: receivers on either accept.
	rotating, err := dispatch.NewSigner(newSecret, oldSecret)
	require.NoError(t, err)
	h = http.Header{}
	rotating.Sign(h, id, time.Now(), body)
	assert.Len(t, strings.Split(h.Get("webhook-signature"), " "), 2)
	verify(t, newSecret, body, h, true)
	verify(t, oldSecret, body, h, true)
	verify(t, otherSecret, body, h, false)

	// A stale timestamp is refused by receivers (replay protection).
	h = http.Header{}
	signer.Sign(h, id, time.Now().Add(-time.Hour), body)
	verify(t, newSecret, body, h, false)
}

func verify(t *testing.T, secret string, body []byte, h http.Header, ok bool) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	err = wh.Verify(body, h)
	if ok {
		assert.NoError(t, err)
	} else {
		assert.Error(t, err)
	}
}

func TestNewSignerRefusesBadSecrets(t *testing.T) {
	for _, s := range []string{"", "nope", "whsec_", "whsec_!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		_, err := dispatch.NewSigner(s)
		assert.ErrorIs(t, err, dispatch.ErrBadSecret, "%q", s)
	}
	_, err := dispatch.NewSigner()
	assert.ErrorIs(t, err, dispatch.ErrBadSecret)
}
