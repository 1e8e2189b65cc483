package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// EventType is one event a decider may publish, at one schema version.
type EventType struct {
	Decider      string `json:"-"`
	Event        string `json:"event" binding:"required"`
	EventVersion int64  `json:"event_version" binding:"required"`
	Description  string `json:"description" binding:"required"`
} //@name EventType

// Decider is a decider with the event types registered for it.
type Decider struct {
	Decider string      `json:"decider" binding:"required"`
	Events  []EventType `json:"events" binding:"required"`
} //@name Decider

// RegisterEventType registers t. It returns created=false with the stored
// registration when an identical one exists, and ErrRegistrationConflict when
// (decider, event, event_version) is registered with another description.
func (s *Store) RegisterEventType(ctx context.Context, t EventType) (EventType, bool, error) {
	row := s.pool.QueryRow(ctx, `
		INSERT INTO deciders (decider, event, event_version, description)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT ON CONSTRAINT deciders_pkey DO NOTHING
		RETURNING decider, event, event_version, description`,
		t.Decider, t.Event, t.EventVersion, t.Description)
	var got EventType
	err := row.Scan(&got.Decider, &got.Event, &got.EventVersion, &got.Description)
	if err == nil {
		return got, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return EventType{}, false, interpretError(err)
	}
	// It exists: this statement's snapshot sees it even when a concurrent
	// registration committed after the INSERT's snapshot.
	err = s.pool.QueryRow(ctx, `
		SELECT decider, event, event_version, description FROM deciders
		WHERE decider = $1 AND event = $2 AND event_version = $3`,
		t.Decider, t.Event, t.EventVersion).Scan(&got.Decider, &got.Event, &got.EventVersion, &got.Description)
	if err != nil {
		return EventType{}, false, interpretError(err)
	}
	if got.Description != t.Description {
		return got, false, fmt.Errorf("event type %q version %d of decider %q is registered with description %q: %w",
			t.Event, t.EventVersion, t.Decider, got.Description, ErrRegistrationConflict)
	}
	return got, false, nil
}

// ListDeciders returns every decider with its event types, ordered by name,
// event and version.
func (s *Store) ListDeciders(ctx context.Context) ([]Decider, error) {
	return s.deciders(ctx, `SELECT decider, event, event_version, description FROM deciders
		ORDER BY decider, event, event_version`)
}

// GetDecider returns one decider; ErrNotFound when it has no event type.
func (s *Store) GetDecider(ctx context.Context, name string) (Decider, error) {
	ds, err := s.deciders(ctx, `SELECT decider, event, event_version, description FROM deciders
		WHERE decider = $1 ORDER BY event, event_version`, name)
	if err != nil {
		return Decider{}, err
	}
	if len(ds) == 0 {
		return Decider{}, fmt.Errorf("decider %q has no registered event types: %w", name, ErrNotFound)
	}
	return ds[0], nil
}

func (s *Store) deciders(ctx context.Context, sql string, args ...any) ([]Decider, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, interpretError(err)
	}
	types, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EventType, error) {
		var t EventType
		err := r.Scan(&t.Decider, &t.Event, &t.EventVersion, &t.Description)
		return t, err
	})
	if err != nil {
		return nil, interpretError(err)
	}
	out := []Decider{}
	for _, t := range types {
		if len(out) == 0 || out[len(out)-1].Decider != t.Decider {
			out = append(out, Decider{Decider: t.Decider, Events: []EventType{}})
		}
		last := &out[len(out)-1]
		last.Events = append(last.Events, t)
	}
	return out, nil
}
