package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/stretchr/testify/require"
)

// openAPIFile is the document the API embeds and serves at /openapi.yaml.
const openAPIFile = "openapi.yaml"

// mountPrefixes are the router's catch-all mounts (chi's "/prefix/*"): the
// document describes each as one operation on "/prefix/{path}", whose path
// parameter stands for the whole rest of the path, slashes included.
var mountPrefixes = []string{"/riverui/"}

// sseEventsExtension names, per event-stream operation, the component
// schema of each event's data.
const sseEventsExtension = "x-sse-events"

// contract is the OpenAPI document, loaded and validated once, with a
// router that finds the operation of a request.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

var loadContract = sync.OnceValues(func() (*contract, error) {
	data, err := os.ReadFile(openAPIFile)
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", openAPIFile, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validate %s: %w", openAPIFile, err)
	}
	// The tests' servers listen on ports of their own: requests are matched
	// by path and method, whatever the document's servers say.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", openAPIFile, err)
	}
	return &contract{doc: doc, router: router}, nil
})

func init() {
	// Event streams are text; their events are checked one by one below.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
}

// apiContract is the loaded document, failing the test when it does not
// load or validate.
func apiContract(t testing.TB) *contract {
	t.Helper()
	c, err := loadContract()
	require.NoError(t, err)
	return c
}

// exchange is one request and the response it got.
type exchange struct {
	method  string
	url     *url.URL // the request's URL; only its path and query are used
	header  http.Header
	reqBody []byte
	status  int
	respHdr http.Header
	body    []byte
}

func (x exchange) String() string {
	body := x.body
	if len(body) > 2000 {
		body = append(body[:2000:2000], "..."...)
	}
	return fmt.Sprintf("%s %s -> %d %s: %s", x.method, x.url.RequestURI(), x.status, x.respHdr.Get("Content-Type"), body)
}

// check validates an exchange against the document: the response's status,
// headers and body must be those the operation documents; a request that
// was answered with 2xx must itself be one the document allows; and a
// request the document has no operation for may only be refused in the
// error shape (401, 403, 404, 405), or under a mount be the mounted
// handler's own answer.
func (c *contract) check(x exchange) error {
	req, err := http.NewRequest(x.method, "http://api.test"+x.url.RequestURI(), bytes.NewReader(x.reqBody))
	if err != nil {
		return err
	}
	req.Header = x.header.Clone()
	route, pathParams, err := c.findRoute(req)
	if err != nil {
		if !errors.Is(err, routers.ErrPathNotFound) && !errors.Is(err, routers.ErrMethodNotAllowed) {
			return err
		}
		switch x.status {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
			return c.checkJSON("Error", x.respHdr, x.body)
		}
		if underMount(x.url.Path) && errors.Is(err, routers.ErrMethodNotAllowed) {
			// A mount's other methods are the mounted handler's own API
			// (River UI's, documented by River), refusals of ours aside.
			return nil
		}
		return fmt.Errorf("no documented operation for %s %s (%v), yet it answered %d", x.method, x.url.Path, err, x.status)
	}
	opts := &openapi3filter.Options{
		AuthenticationFunc:      openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus:   true,
		MultiError:              true,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
	}
	reqInput := &openapi3filter.RequestValidationInput{Request: req, PathParams: pathParams, Route: route, Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 x.status,
		Header:                 x.respHdr,
		Body:                   io.NopCloser(bytes.NewReader(x.body)),
		Options:                opts,
	}); err != nil {
		return fmt.Errorf("response: %w", err)
	}
	if x.status >= 200 && x.status < 300 {
		req.Body = io.NopCloser(bytes.NewReader(x.reqBody))
		if err := openapi3filter.ValidateRequest(context.Background(), reqInput); err != nil {
			return fmt.Errorf("the request was accepted (%d) but the document refuses it: %w", x.status, err)
		}
	}
	if events, ok := route.Operation.Extensions[sseEventsExtension]; ok && x.status == http.StatusOK {
		return c.checkEvents(events, x.body)
	}
	return nil
}

// findRoute finds the operation of a request; a request under a mount is
// routed to the mount's one operation.
func (c *contract) findRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	for _, prefix := range mountPrefixes {
		if rest, ok := strings.CutPrefix(req.URL.Path, prefix); ok {
			if rest == "" {
				rest = "-" // the mount's start page; a path parameter cannot be empty
			}
			routed := req.Clone(req.Context())
			routed.URL.Path = prefix + rest
			routed.URL.RawPath = prefix + url.PathEscape(rest)
			route, params, err := c.router.FindRoute(routed)
			return route, params, err
		}
	}
	return c.router.FindRoute(req)
}

func underMount(path string) bool {
	for _, prefix := range mountPrefixes {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// checkJSON validates a JSON body against a component schema.
func (c *contract) checkJSON(schema string, header http.Header, body []byte) error {
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt != "application/json" {
		return fmt.Errorf("Content-Type %q, want application/json", header.Get("Content-Type"))
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	ref := c.doc.Components.Schemas[schema]
	if ref == nil {
		return fmt.Errorf("no component schema %s", schema)
	}
	if err := ref.Value.VisitJSON(v, openapi3.MultiErrors(), openapi3.DisableSchemaErrorDetails()); err != nil {
		return fmt.Errorf("body does not match %s: %w", schema, err)
	}
	return nil
}

// checkEvents validates each event of a server-sent event stream against
// the schema the operation's x-sse-events names for it.
func (c *contract) checkEvents(spec any, body []byte) error {
	schemas, ok := spec.(map[string]any)
	if !ok {
		return fmt.Errorf("%s is not a map of event names to schema names", sseEventsExtension)
	}
	var name, id string
	var data []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"): // a comment (keep-alive)
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case line == "" && (name != "" || data != nil):
			if id == "" {
				return fmt.Errorf("event %q has no id", name)
			}
			schema, ok := schemas[name].(string)
			if !ok {
				return fmt.Errorf("event %q is not documented in %s", name, sseEventsExtension)
			}
			if err := c.checkJSON(schema, http.Header{"Content-Type": {"application/json"}}, []byte(strings.Join(data, "\n"))); err != nil {
				return fmt.Errorf("event %q: %w", name, err)
			}
			name, id, data = "", "", nil
		case line != "":
			return fmt.Errorf("event stream line %q is neither event, id, data nor comment", line)
		}
	}
	return sc.Err()
}

// checked wraps an API handler so that every exchange it serves is checked
// against the document, failing t on a mismatch. It sees what the client
// cannot tell apart (raw downloads, event streams, refusals before the
// body was read) and every helper's requests alike.
func checked(t testing.TB, api http.Handler) http.Handler {
	c := apiContract(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var reqBody bytes.Buffer
		// A copy: net/http keeps the request it handed over, and treats
		// its body differently when it is not its own.
		r = r.WithContext(r.Context())
		if r.Body != nil {
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.TeeReader(r.Body, &reqBody), r.Body}
		}
		header := r.Header.Clone()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		var respBody bytes.Buffer
		ww.Tee(&respBody)
		api.ServeHTTP(ww, r)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		x := exchange{method: r.Method, url: r.URL, header: header, reqBody: reqBody.Bytes(),
			status: status, respHdr: ww.Header().Clone(), body: respBody.Bytes()}
		if err := c.check(x); err != nil {
			t.Errorf("%s does not match %s:\n%v\n%s", r.Method+" "+r.URL.RequestURI(), openAPIFile, err, x)
		}
	})
}
