package httpapi

import (
	_ "embed"
	"net/http"
	"strconv"
)

// openAPIDocument describes every route of the API in OpenAPI 3.0, with
// the built-in task types; a test keeps it and the router in step and
// validates the tests' responses against it. A server serves it with the
// types it runs (OpenAPIDocument).
//
//go:embed openapi.yaml
var openAPIDocument []byte

// openAPI serves the API's OpenAPI document.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Content-Length", strconv.Itoa(len(s.openAPIDoc)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.openAPIDoc)
	return nil
}
