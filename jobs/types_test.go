package jobs

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/fetch"
)

// testEnv is the deployment each task type's Example is valid in.
var testEnv = Env{SearchSources: []string{"brave"}, SearchMaxResults: 5, Fetch: fetch.Config{Allowlist: []string{"*"}}}

// Every task type takes an idempotency key: without it a repeated
// Idempotency-Key would enqueue a second task.
func TestEveryTaskTypeTakesAnIdempotencyKey(t *testing.T) {
	for _, name := range TypeNames() {
		args, err := Types[name].Decode(json.RawMessage(Types[name].Example), testEnv)
		require.NoError(t, err, name)
		keyed, ok := WithIdempotencyKey(args, "client/k1")
		require.True(t, ok, "%s args do not embed Idempotency", name)
		b, err := json.Marshal(keyed)
		require.NoError(t, err)
		require.Contains(t, string(b), `"idempotency_key":"client/k1"`, name)
		require.Equal(t, name, keyed.Kind())
	}
}

// FuzzDecodeFetch feeds arbitrary params to the fetch task's validation:
// what it accepts is an http(s) URL the allowlist allows.
func FuzzDecodeFetch(f *testing.F) {
	f.Add([]byte(`{"url":"https://docs.example.com/a?b=c"}`))
	f.Add([]byte(`{"url":"http://169.254.169.254/"}`))
	f.Add([]byte(`{"url":"https://evil.com@example.com/"}`))
	f.Add([]byte(`{"url":7}`))
	env := Env{Fetch: fetch.Config{Allowlist: []string{"*.example.com"}}}
	f.Fuzz(func(t *testing.T, params []byte) {
		args, err := DecodeFetch(json.RawMessage(params), env)
		if err != nil {
			var pe *taskrunner.Error
			if !errors.As(err, &pe) || (pe.Code != taskrunner.CodeInvalidParams && pe.Code != taskrunner.CodeDomainNotAllowed) {
				t.Fatalf("refusal is not a *taskrunner.Error with a refusal's code: %#v", err)
			}
			return
		}
		if !strings.HasPrefix(args.URL, "http://") && !strings.HasPrefix(args.URL, "https://") {
			t.Fatalf("accepted %q", args.URL)
		}
		if _, err := fetch.CheckURL(args.URL, env.Fetch); err != nil {
			t.Fatalf("accepted %q, which does not pass the check again: %v", args.URL, err)
		}
	})
}

// FuzzPlainStringParam: what the echo task's quick reading of its params
// takes, decodeParams decodes to the same message.
func FuzzPlainStringParam(f *testing.F) {
	for _, s := range []string{`{"msg":"hello"}`, ` { "msg" : "hé\u007f" } `, `{"msg":"a\"b"}`, `{"msg":"a","msg":"b"}`,
		`{"MSG":"x"}`, `{"msg":"x"}x`, "\t{\"msg\":\"\xff\"}\n", `{"msg":null}`, `{"msg":"x",}`, `{"msg":"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		got, ok := plainStringParam(params, "msg")
		if !ok {
			return
		}
		var p struct {
			Msg *string `json:"msg"`
		}
		require.NoError(t, decodeParams(params, &p), "%q", params)
		require.NotNil(t, p.Msg, "%q", params)
		require.Equal(t, *p.Msg, got, "%q", params)
	})
}
