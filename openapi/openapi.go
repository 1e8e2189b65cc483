// Package openapi holds fstore's OpenAPI 3 document, generated from the
// swag annotations of internal/http by 'make openapi' (see gen/), committed,
// and served by the API. A test fails when it is stale.
package openapi

import _ "embed"

// JSON is the OpenAPI 3 document.
//
//go:embed openapi.json
var JSON []byte

// YAML is the same document as YAML.
//
//go:embed openapi.yaml
var YAML []byte
