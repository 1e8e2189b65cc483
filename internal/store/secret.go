package store

import (
	"encoding/base64"
	"errors"
	"strings"
)

// ErrBadSecret: a view's signing secret is not a Standard Webhooks secret,
// whsec_ followed by the base64 of 24 to 64 bytes.
var ErrBadSecret = errors.New("a webhook secret is whsec_ followed by the base64 of 24 to 64 bytes")

// SecretKey returns the key of a view's Standard Webhooks signing secret
// (whsec_ + base64), or ErrBadSecret. The API checks secrets with it before
// storing one, and the dispatcher before signing with one.
func SecretKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	key, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(key) < 24 || len(key) > 64 {
		return nil, ErrBadSecret
	}
	return key, nil
}
