// Package sql holds fstore's numbered schema migrations and SQL functions.
//
// The files are plain SQL so that fstore-sql users can read and run them by
// hand; the API embeds them and applies the pending ones at start-up.
package sql

import "embed"

// Migrations holds migrations/NNNN_name.sql, applied in numeric order.
//
//go:embed migrations/*.sql
var Migrations embed.FS
