// Package client is a Go client generated from openapi/openapi.yaml by
// oapi-codegen (make openapi). It exists to prove the document is good
// enough for SDK generators: client_test.go drives a full scenario through
// it against the real server. Users may generate their own the same way.
package client
