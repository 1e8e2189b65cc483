package store

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Transient refusals answer 503 (retry), not 500.
func TestTransientErrorsAreUnavailable(t *testing.T) {
	for _, code := range []string{"40P01", "40001", "55P03", "57014", "57P01", "08006", "53300"} {
		err := interpretError(&pgconn.PgError{Code: code})
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("SQLSTATE %s: got %v, want ErrUnavailable", code, err)
		}
	}
}
