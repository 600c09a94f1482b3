package httpapi

import (
	"errors"
	"testing"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/tasktype"
)

// FuzzTaskTypeRequest feeds arbitrary bodies to the PUT /task-types/{name}
// decoder and the schema compiler behind it: they never panic, a refusal
// is always a client error with a stable code, and a schema that compiles
// validates params without panicking.
func FuzzTaskTypeRequest(f *testing.F) {
	for _, s := range []string{
		`{"mode":"pull","params_schema":{"type":"object","required":["a"],"properties":{"a":{"type":"integer"}}}}`,
		`{"mode":"push","params_schema":{},"push_url":"https://example.com/hook","timeout_seconds":30,"max_retries":3}`,
		`{"mode":"pull","params_schema":{"$ref":"#/$defs/x","$defs":{"x":{"type":"string"}}}}`,
		`{"mode":"pull","params_schema":{"$ref":"file:///etc/passwd"}}`,
		`{"mode":"pull","params_schema":{"pattern":"(a+)+$","type":"string"}}`,
		`{"mode":"pull","params_schema":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}}`,
		`{"mode":"pull","params_schema":{"type":12}}`,
		`{"mode":"pull","params_schema":true}`,
		`{"mode":"pull","params_schema":null,"extra":1}`,
		`{"mode":"pull","params_schema":{"a\u0000":1}}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	codes := map[taskrunner.Code]bool{taskrunner.CodeInvalidJSON: true, taskrunner.CodeInvalidParams: true}
	refusal := func(t *testing.T, err error) {
		t.Helper()
		var e *taskrunner.Error
		if !errors.As(err, &e) || !codes[e.Code] {
			t.Fatalf("refusal without a client error code: %v", err)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tt, err := decodeTaskTypeRequest("fuzzed", body)
		if err != nil {
			refusal(t, err)
			return
		}
		schema, err := tasktype.CompileSchema(tt.Name, tt.ParamsSchema)
		if err != nil {
			refusal(t, err)
			return
		}
		for _, params := range []string{`{}`, `{"a":1}`, `{"a":{"b":[1,"x",null]}}`} {
			if _, err := schema.Validate([]byte(params)); err != nil {
				refusal(t, err)
			}
		}
	})
}
