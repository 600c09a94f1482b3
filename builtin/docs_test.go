package builtin_test

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
	"github.com/taskrunner/taskrunner/httpapi"
	"github.com/taskrunner/taskrunner/jobs"
	"github.com/taskrunner/taskrunner/tasktype"
)

var update = flag.Bool("update", false, "write the task types into "+openAPIPath+" and "+readmePath)

const (
	openAPIPath = "../httpapi/openapi.yaml"
	readmePath  = "../README.md"

	// The README's table of task types starts with these lines and ends at
	// a blank line.
	readmeTableHead = "| type | params | does |\n| --- | --- | --- |\n"
)

// TestTaskTypesAreDocumented fails when a registered task type is missing
// from the OpenAPI document or the README, or when what they show of it is
// not what its file says. With -update it writes them.
func TestTaskTypesAreDocumented(t *testing.T) {
	names := types.Names()
	for _, tt := range types.Types() {
		if m := missingFields(tt); len(m) > 0 {
			t.Fatalf("task type %s cannot be documented: its Doc lacks %s", tt.Name, strings.Join(m, ", "))
		}
	}
	stale := false
	for _, d := range []struct {
		path string
		want func(string) (string, error)
	}{{openAPIPath, openAPIWithTypes}, {readmePath, readmeWithTypes}} {
		b, err := os.ReadFile(d.path)
		require.NoError(t, err)
		want, err := d.want(string(b))
		require.NoError(t, err, d.path)
		if *update {
			if want != string(b) {
				require.NoError(t, os.WriteFile(d.path, []byte(want), 0o644))
			}
			continue
		}
		if want != string(b) {
			stale = true
			t.Errorf("%s does not show the built-in task types as builtin/ defines them:\n%s\nrun: go test ./builtin -run TestTaskTypesAreDocumented -update", d.path, firstDifference(string(b), want))
		}
	}
	if stale {
		return
	}

	// What clients see, read back: every registered type and no other.
	data, err := os.ReadFile(openAPIPath)
	require.NoError(t, err)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(loader.Context))
	schemas := doc.Components.Schemas
	var enum []string
	for _, v := range schemas["TaskType"].Value.Enum {
		enum = append(enum, v.(string))
	}
	require.ElementsMatch(t, names, enum, "the TaskType enum of %s", openAPIPath)
	var refs []string
	for _, r := range schemas["TaskParams"].Value.AnyOf {
		refs = append(refs, r.Ref)
	}
	for _, name := range names {
		schema := httpapi.ParamsSchemaName(name)
		require.Contains(t, refs, "#/components/schemas/"+schema, "TaskParams of %s", openAPIPath)
		require.Contains(t, schemas, schema, openAPIPath)
		params := schemas[schema].Value
		tt, _ := types.Lookup(name)
		for _, p := range tt.Params {
			require.Contains(t, params.Properties, p.Name, "%s: %s", openAPIPath, schema)
		}
		// The example clients see is one the type takes.
		example, err := json.Marshal(params.Example)
		require.NoError(t, err)
		_, err = tt.Decode(example)
		require.NoError(t, err, "%s: the example of %s", openAPIPath, schema)
		require.Contains(t, schemas["Task"].Value.Properties["result"].Value.Description, name+" `", "%s: Task's result", openAPIPath)
	}
	// And the params of a type defined at run time, checked by its schema.
	require.Contains(t, refs, "#/components/schemas/ExternalTaskParams", "TaskParams of %s", openAPIPath)
	require.Len(t, refs, len(names)+1, "TaskParams of %s", openAPIPath)
	require.Equal(t, "#/components/schemas/TaskParams", schemas["TaskRequest"].Value.Properties["params"].Ref, "TaskRequest's params in %s", openAPIPath)
}

// TestTaskTypesAreComplete checks what each type's file must give: docs,
// a schema naming only params Decode takes, and an example it accepts.
func TestTaskTypesAreComplete(t *testing.T) {
	for _, tt := range types.Types() {
		name := tt.Name
		if m := missingFields(tt); len(m) > 0 {
			t.Errorf("task type %s: its Doc lacks %s", name, strings.Join(m, ", "))
			continue
		}
		args, err := tt.Decode(json.RawMessage(tt.Example))
		require.NoError(t, err, "%s: its Example is refused", name)
		var params []string
		for _, p := range tt.Params {
			params = append(params, p.Name)
		}
		require.ElementsMatch(t, argsFields(args), params, "%s: Params are not its args' fields", name)
		for _, p := range tt.Params {
			// Decode knows the param: a bad value is refused naming it,
			// not as an unknown param.
			_, err := tt.Decode(json.RawMessage(`{"` + p.Name + `":{}}`))
			var pe *taskrunner.Error
			require.ErrorAs(t, err, &pe, "%s: param %s", name, p.Name)
			require.NotEqual(t, "is not a known param", pe.Message, "%s: param %s is in Params but Decode does not take it", name, p.Name)
		}
	}
}

// argsFields are the JSON names of args' fields, but for its Idempotency.
func argsFields(args river.JobArgs) []string {
	var names []string
	for f := range reflect.TypeOf(args).Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); f.IsExported() && !f.Anonymous && name != "-" {
			names = append(names, cmp.Or(name, f.Name))
		}
	}
	return names
}

// Jobs taskrunner enqueues itself are no task type: clients cannot
// submit them, and no document lists them.
func TestInternalJobsAreNotTaskTypes(t *testing.T) {
	for _, kind := range []string{jobs.RetentionArgs{}.Kind(), jobs.RunSweepArgs{}.Kind()} {
		_, ok := types.Lookup(kind)
		require.False(t, ok, kind)
		_, err := tasktype.NewRegistry(tasktype.New(tasktype.Doc{}, func(json.RawMessage) (namedArgs, error) { return namedArgs{kind}, nil },
			func(tasktype.Services) (river.Worker[namedArgs], error) { return nil, nil }))
		require.Error(t, err, "a type may not be named as taskrunner's own jobs are: %s", kind)
	}
}

// namedArgs are args whose kind is chosen at run time: a type named as a
// job of taskrunner's own is refused.
type namedArgs struct{ kind string }

func (a namedArgs) Kind() string { return a.kind }

// missingFields names what a TaskType lacks for its docs and tests.
func missingFields(tt tasktype.Type) []string {
	var m []string
	for field, empty := range map[string]bool{
		"Params (its params' schema)":            len(tt.Params) == 0,
		"ParamsDoc (the README's params column)": tt.ParamsDoc == "",
		"Summary (the README's does column)":     tt.Summary == "",
		"Result (its result's shape)":            tt.Result == "",
		"Example (params Decode accepts)":        tt.Example == "",
	} {
		if empty {
			m = append(m, field)
		}
	}
	for _, p := range tt.Params {
		if !slices.Contains([]string{"string", "number", "integer", "boolean", "array"}, p.Type) || p.Name == "" || p.Description == "" {
			m = append(m, fmt.Sprintf("a Name, a Type (string, number, integer, boolean or array) and a Description of param %q", p.Name))
		}
	}
	slices.Sort(m)
	return m
}

// openAPIWithTypes is the OpenAPI document of the built-in types.
func openAPIWithTypes(string) (string, error) {
	doc, err := httpapi.OpenAPIDocument(types)
	return string(doc), err
}

// readmeWithTypes is readme with the task types written from Types.
func readmeWithTypes(readme string) (string, error) {
	var b strings.Builder
	b.WriteString(readmeTableHead)
	for _, tt := range types.Types() {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", tt.Name, tt.ParamsDoc, tt.Summary)
	}
	b.WriteString("\n")
	i := strings.Index(readme, readmeTableHead)
	if i < 0 {
		return "", fmt.Errorf("no table of task types (%q)", strings.TrimSpace(readmeTableHead))
	}
	j := strings.Index(readme[i:], "\n\n")
	if j < 0 {
		return "", fmt.Errorf("the table of task types does not end")
	}
	readme = readme[:i] + b.String() + readme[i+j+2:]
	var ok bool
	if readme, ok = replaceAll(readme, "(?m)^(\\| `max_retries` \\| ).*?( \\|)", "${1}"+maxRetriesDefaults()+"${2}"); !ok {
		return "", fmt.Errorf("no row for max_retries")
	}
	return readme, nil
}

// maxRetriesDefaults lists the types whose max_retries is not 0 by
// default, as the README's table of request fields shows them: "0
// (search: 3)".
func maxRetriesDefaults() string {
	var parts []string
	for _, tt := range types.Types() {
		if n := tt.DefaultMaxRetries; n != 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", tt.Name, n))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return "0 (" + strings.Join(parts, ", ") + ")"
}

// replaceAll replaces every match of pattern in s with repl ($1 expanded),
// and reports whether there was one.
func replaceAll(s, pattern, repl string) (string, bool) {
	re := regexp.MustCompile(pattern)
	return re.ReplaceAllString(s, repl), re.MatchString(s)
}

// firstDifference shows where got and want first differ, a line each.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		gl, wl := "(end)", "(end)"
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d is\n\t%s\nand should be\n\t%s", i+1, gl, wl)
		}
	}
	return ""
}
