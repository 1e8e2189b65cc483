package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// The messages of the errors a Store method returns are read by the API's
// users: they are sentences in the API's terms, with names quoted the way
// JSON quotes them. The SQL functions raise messages of their own, with
// SQL's quoting, for SQL users; these replace them at the store boundary.

// describedError is an error wrapping a sentinel, with a message written for
// people; errors.Is still finds the sentinel and the driver error behind it.
type describedError struct {
	msg string
	err error
}

func (e *describedError) Error() string { return e.msg }
func (e *describedError) Unwrap() error { return e.err }

// describe gives err a message of its own.
func describe(err error, format string, args ...any) error {
	return &describedError{msg: fmt.Sprintf(format, args...), err: err}
}

// partitionRef names a partition of a view in messages.
type partitionRef struct {
	view, decider, deciderID string
}

func (p partitionRef) String() string {
	return fmt.Sprintf("the partition of decider %q, decider_id %q in view %q", p.decider, p.deciderID, p.view)
}

// viewNotFound describes err (ErrNotFound) as a missing view.
func viewNotFound(err error, view string) error {
	return describe(err, "view %q does not exist", view)
}

// partitionError rewrites an error about partition p: not found tells a
// missing view from a missing partition (one more query, on the error path
// only); a lost lease or an offset not handed out says what to do.
func (s *Store) partitionError(ctx context.Context, err error, p partitionRef, leaseID uuid.UUID, offset int64) error {
	switch {
	case errors.Is(err, ErrNotFound):
		var viewExists bool
		if qerr := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM views WHERE view = $1)`, p.view).
			Scan(&viewExists); qerr == nil && !viewExists {
			return viewNotFound(err, p.view)
		}
		return describe(err, "view %q has no partition for decider %q, decider_id %q (it has not seen an event of that stream)",
			p.view, p.decider, p.deciderID)
	case errors.Is(err, ErrLeaseLost):
		return describe(err, "lease %s is no longer the lease of %s: it expired or was settled, and another consumer "+
			"may hold the partition now; lease again", leaseID, p)
	case errors.Is(err, ErrNotHandedOut):
		var acked int64
		var leasedTo *int64
		if qerr := s.pool.QueryRow(ctx, `SELECT acked_offset, leased_to FROM view_partitions
			WHERE view = $1 AND decider = $2 AND decider_id = $3`, p.view, p.decider, p.deciderID).
			Scan(&acked, &leasedTo); qerr == nil && leasedTo != nil {
			return describe(err, "offset %d was not handed out in lease %s of %s: ack an offset from %d to %d",
				offset, leaseID, p, acked+1, *leasedTo)
		}
		return describe(err, "offset %d was not handed out in lease %s of %s", offset, leaseID, p)
	}
	return err
}
