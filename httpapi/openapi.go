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

// openAPI serves the API's OpenAPI document, with the task types defined
// at run time.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) error {
	doc := s.currentOpenAPIDocument(r.Context())
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
	return nil
}
