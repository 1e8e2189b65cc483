// Package web holds the operator console served at /console: its sources
// and pinned build tools are in console/ (TypeScript and CSS, built with
// esbuild), and the built files in console/dist are committed and embedded
// here, so the API binary serves the console offline. 'make console'
// rebuilds them; 'make console-check' (part of make test) fails when they
// are stale.
package web

import (
	"embed"
	"io/fs"
)

//go:embed console/dist
var dist embed.FS

// Console is the built console: index.html, console.js, console.css and
// favicon.svg at its root, for httpapi.Options.Console.
var Console = mustSub(dist, "console/dist")

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // dir is a literal of this file: only a build mistake reaches here
	}
	return sub
}
