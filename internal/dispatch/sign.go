// Package dispatch pushes the events of views with an edge_function_url to
// that URL: signed the Standard Webhooks way (sign.go), through a client that
// refuses private addresses (guard.go), retried with backoff (backoff.go), in
// order per partition by the delivery loop (dispatcher.go) that
// cmd/dispatcher runs.
package dispatch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fstore/fstore/internal/store"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// ErrBadSecret: a secret is not whsec_ followed by the base64 of 24 to 64
// bytes (store.ErrBadSecret, where the format is defined).
var ErrBadSecret = store.ErrBadSecret

// Signer signs webhook requests with one or more secrets. Several secrets
// exist during a rotation: the request carries one signature per secret,
// space-separated, and a receiver that knows any of them accepts it.
type Signer struct {
	keys [][]byte
}

// NewSigner returns a Signer for the given secrets (whsec_…), newest first.
func NewSigner(secrets ...string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrBadSecret)
	}
	s := &Signer{}
	for _, secret := range secrets {
		key, err := store.SecretKey(secret)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, key)
	}
	return s, nil
}

// Sign sets the Standard Webhooks headers on h for a message with this id,
// sent at ts, with this body: v1,<base64 HMAC-SHA256 of "id.timestamp.body">
// per secret.
func (s *Signer) Sign(h http.Header, id string, ts time.Time, body []byte) {
	unix := strconv.FormatInt(ts.Unix(), 10)
	sigs := make([]string, len(s.keys))
	for i, key := range s.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(unix))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, unix)
	h.Set(HeaderSignature, strings.Join(sigs, " "))
}
