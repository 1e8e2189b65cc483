package store

import (
	"context"
	"strconv"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// Conditional appends that arrive together are stored in one transaction,
// as single appends are (coalesce.go): alone, each costs a commit and a read
// of pg_locks (the wait for unconditional writers below it), about as much
// as the rest of its work. fstore_append_if_group (0007) takes the keys of
// every member at once, in ascending order, reads pg_locks once, then checks
// and appends each member in turn, each in a subtransaction of its own: the
// members' outcomes are those of the same appends run one after the other.
//
// A member refused by its condition is answered from the group. Anything
// else that is not "appended" (a retry, a conflict, an unregistered type)
// runs again alone, as does every member of a group whose statement failed,
// so each caller gets exactly the answer of an append of its own.
const (
	conditionalWorkers = 2
	// Each appending member takes a subtransaction id; PostgreSQL caches 64
	// per transaction before other backends' snapshots get slower.
	conditionalMaxGroup = 48
)

type pendingConditional struct {
	ctx   context.Context
	evs   []NewEvent
	cond  Condition
	query string // cond.Query as JSON
	done  chan appendOutcome
}

// conditionals groups conditional appends.
type conditionals struct {
	s *Store
	b *batcher[*pendingConditional]
	// groups counts the group statements run, for tests to see that
	// groups formed.
	groups atomic.Int64
}

func newConditionals(s *Store) *conditionals {
	c := &conditionals{s: s}
	c.b = newBatcher(conditionalWorkers, conditionalMaxGroup, c.appendGroup, s.answerAlone)
	return c
}

func (c *conditionals) append(ctx context.Context, p *pendingConditional) (AppendResult, error) {
	queued, err := c.b.submit(ctx, p)
	switch {
	case err != nil:
		return AppendResult{}, err
	case !queued:
		return c.s.appendIfAlone(ctx, p.evs, p.query, p.cond.After)
	}
	select {
	case out := <-p.done:
		return out.res, out.err
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	}
}

func (c *conditionals) close() { c.b.close() }

func (s *Store) answerAlone(p *pendingConditional) {
	res, err := s.appendIfAlone(p.ctx, p.evs, p.query, p.cond.After)
	p.done <- appendOutcome{res, err}
}

// groupRow is one row of fstore_append_if_group: an appended event of a
// member, or a member's refusal (code set).
type groupRow struct {
	member       int
	code, detail *string
	event        Event
}

// appendGroup runs a group of conditional appends in one statement and
// answers each member, but those it returns, which run again alone.
func (c *conditionals) appendGroup(group []*pendingConditional) (alone []*pendingConditional) {
	s := c.s
	live := make([]*pendingConditional, 0, len(group))
	for _, p := range group {
		if p.ctx.Err() != nil {
			p.done <- appendOutcome{err: p.ctx.Err()}
		} else {
			live = append(live, p)
		}
	}
	// A group of one too: the group's statement is the cheaper way to run
	// a conditional append (its queries come checked and flattened from
	// here, where appendIf's SQL validates and flattens the JSON again).
	if len(live) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	c.groups.Add(1)
	rows, err := s.pool.Query(ctx, appendIfGroupSQL, groupArgs(live)...)
	var results []groupRow
	if err == nil {
		results, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (groupRow, error) {
			var g groupRow
			var err error
			g.event, err = scanEvent(r, &g.member, &g.code, &g.detail)
			return g, err
		})
	}
	if err != nil {
		// The statement stored nothing (a deadlock, a lost connection):
		// every member runs again alone.
		return live
	}
	return s.answerGroup(live, results)
}

// answerGroup answers the members from the group's rows, but those it
// returns: their answer needs diagnosing alone (see appendIf).
func (s *Store) answerGroup(live []*pendingConditional, results []groupRow) (alone []*pendingConditional) {
	appended := make([][]Event, len(live))
	refused := make([]*groupRow, len(live))
	for i := range results {
		r := &results[i]
		m := r.member - 1
		if r.code != nil {
			refused[m] = r
		} else {
			appended[m] = append(appended[m], r.event)
		}
	}
	for m, p := range live {
		switch r := refused[m]; {
		case r != nil && *r.code == codeConditionFailed:
			offset, err := strconv.ParseInt(*r.detail, 10, 64)
			if err != nil {
				alone = append(alone, p)
				continue
			}
			p.done <- appendOutcome{err: &ConditionError{Offset: offset, After: p.cond.After}}
		case r != nil:
			alone = append(alone, p)
		default:
			res, err := inOrder(p.evs, appended[m])
			if err != nil {
				alone = append(alone, p)
				continue
			}
			p.done <- appendOutcome{res: res}
		}
	}
	return alone
}

// appendIfGroupSQL reads fstore_append_if_group's rows with scanEvent: a
// refusal's event columns are NULL, read as zero values.
var appendIfGroupSQL = `SELECT COALESCE(event, ''), COALESCE(event_id, '00000000-0000-0000-0000-000000000000'),
       COALESCE(event_version, 0), COALESCE(decider, ''), COALESCE(decider_id, ''), COALESCE(data, 'null'),
       COALESCE(command_id, '00000000-0000-0000-0000-000000000000'), previous_id, COALESCE(final, false),
       COALESCE(created_at, 'epoch'), COALESCE("offset", 0), COALESCE(metadata, '{}'), COALESCE(tags, '{}'),
       member, code, detail
FROM fstore_append_if_group($1::text[]::jsonb[], ` + placeholders(2, 25) + `)`

// placeholders returns "$from, …, $to".
func placeholders(from, to int) string {
	var b []byte
	for i := from; i <= to; i++ {
		if i > from {
			b = append(b, ", "...)
		}
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(i), 10)
	}
	return string(b)
}

// groupArgs are fstore_append_if_group's arguments for the members: per
// member its query and position, the bounds of its events and of its tag
// query's items (empty when it is not a tag query); the items, flattened;
// then the events' columns.
func groupArgs(members []*pendingConditional) []any {
	n := len(members)
	queries := make([]string, n)
	afters, evFrom, evTo, itFrom, itTo := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n),
		make([]int64, n)
	var items tagQuery
	items.tags, items.types = []string{}, []string{}
	var evs []NewEvent
	for m, p := range members {
		queries[m], afters[m] = p.query, p.cond.After
		evFrom[m] = int64(len(evs) + 1)
		evs = append(evs, p.evs...)
		evTo[m] = int64(len(evs))
		itFrom[m] = int64(len(items.tagsFrom) + 1)
		if t, ok := p.cond.Query.tagQuery(); ok {
			items.append(t)
		}
		itTo[m] = int64(len(items.tagsFrom))
	}
	args := []any{queries, afters, evFrom, evTo, itFrom, itTo}
	args = append(args, items.args()...)
	return append(args, columns(evs)...)
}

// append adds t's items to those of q, shifting their bounds.
func (q *tagQuery) append(t tagQuery) {
	tagBase, typeBase := int64(len(q.tags)), int64(len(q.types))
	for i := range t.tagsFrom {
		q.tagsFrom, q.tagsTo = append(q.tagsFrom, t.tagsFrom[i]+tagBase), append(q.tagsTo, t.tagsTo[i]+tagBase)
		q.typesFrom, q.typesTo = append(q.typesFrom, t.typesFrom[i]+typeBase), append(q.typesTo, t.typesTo[i]+typeBase)
	}
	q.tags, q.types = append(q.tags, t.tags...), append(q.types, t.types...)
}
