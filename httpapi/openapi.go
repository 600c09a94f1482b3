package httpapi

import (
	_ "embed"
	"net/http"
	"strconv"
)

// openAPIDocument describes every route of the API in OpenAPI 3.0; a test
// keeps it and the router in step and validates the tests' responses
// against it.
//
//go:embed openapi.yaml
var openAPIDocument []byte

// openAPI serves the API's OpenAPI document.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDocument)
	return nil
}
