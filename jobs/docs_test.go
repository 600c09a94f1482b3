package jobs

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/taskrunner/taskrunner"
)

var update = flag.Bool("update", false, "write the task types into "+openAPIPath+" and "+readmePath)

const (
	openAPIPath = "../httpapi/openapi.yaml"
	readmePath  = "../README.md"

	// The task types' part of the OpenAPI document's schemas lies between
	// these lines.
	openAPIBegin = "    # Task types: written from jobs/ by `go test ./jobs -run TestTaskTypesAreDocumented -update`.\n"
	openAPIEnd   = "    # End of task types.\n"
	// The README's table of task types starts with these lines and ends at
	// a blank line.
	readmeTableHead = "| type | params | does |\n| --- | --- | --- |\n"
)

// TestTaskTypesAreDocumented fails when a registered task type is missing
// from the OpenAPI document or the README, or when what they show of it is
// not what its file says. With -update it writes them.
func TestTaskTypesAreDocumented(t *testing.T) {
	names := TypeNames()
	for _, name := range names {
		if m := missingFields(Types[name]); len(m) > 0 {
			t.Fatalf("task type %s cannot be documented: its TaskType in jobs/ lacks %s", name, strings.Join(m, ", "))
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
			t.Errorf("%s does not show the task types as jobs/ registers them:\n%s\nrun: go test ./jobs -run TestTaskTypesAreDocumented -update", d.path, firstDifference(string(b), want))
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
		ref := "#/components/schemas/" + paramsSchemaName(name)
		require.Contains(t, refs, ref, "TaskParams of %s", openAPIPath)
		require.Contains(t, schemas, paramsSchemaName(name), openAPIPath)
		params := schemas[paramsSchemaName(name)].Value
		for _, p := range Types[name].Params {
			require.Contains(t, params.Properties, p.Name, "%s: %s", openAPIPath, paramsSchemaName(name))
		}
		require.Contains(t, schemas["Task"].Value.Properties["result"].Value.Description, name+" `", "%s: Task's result", openAPIPath)
	}
	require.Len(t, refs, len(names), "TaskParams of %s", openAPIPath)
	require.Equal(t, "#/components/schemas/TaskParams", schemas["TaskRequest"].Value.Properties["params"].Ref, "TaskRequest's params in %s", openAPIPath)
}

// TestTaskTypesAreComplete checks what each type's file must give: docs,
// a schema naming only params Decode takes, and an example it accepts.
func TestTaskTypesAreComplete(t *testing.T) {
	for _, name := range TypeNames() {
		tt := Types[name]
		if m := missingFields(tt); len(m) > 0 {
			t.Errorf("task type %s: its TaskType in jobs/ lacks %s", name, strings.Join(m, ", "))
			continue
		}
		args, err := tt.Decode(json.RawMessage(tt.Example), testEnv)
		require.NoError(t, err, "%s: its Example is refused", name)
		var params []string
		for _, p := range tt.Params {
			params = append(params, p.Name)
		}
		require.ElementsMatch(t, argsFields(args), params, "%s: Params are not its args' fields", name)
		for _, p := range tt.Params {
			// Decode knows the param: a bad value is refused naming it,
			// not as an unknown param.
			_, err := tt.Decode(json.RawMessage(`{"`+p.Name+`":{}}`), testEnv)
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
	require.NotContains(t, Types, RetentionArgs{}.Kind())
	require.NotContains(t, Types, RunSweepArgs{}.Kind())
}

// missingFields names what a TaskType lacks for its docs and tests.
func missingFields(tt TaskType) []string {
	var m []string
	for field, empty := range map[string]bool{
		"Params (its params' schema)":            len(tt.Params) == 0,
		"ParamsDoc (the README's params column)": tt.ParamsDoc == "",
		"Doc (the README's does column)":         tt.Doc == "",
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

// openAPIWithTypes is doc with the task types written from Types.
func openAPIWithTypes(doc string) (string, error) {
	names := TypeNames()
	var b strings.Builder
	b.WriteString(openAPIBegin)
	fmt.Fprintf(&b, "    TaskType:\n      type: string\n      enum: [%s]\n", strings.Join(names, ", "))
	b.WriteString("    TaskParams:\n      description: The type's params (unknown params are refused).\n      anyOf:\n")
	for _, name := range names {
		fmt.Fprintf(&b, "        - $ref: \"#/components/schemas/%s\"\n", paramsSchemaName(name))
	}
	for _, name := range names {
		writeParamsSchema(&b, name, Types[name].Params)
	}
	b.WriteString(openAPIEnd)
	doc, err := replaceBetween(doc, openAPIBegin, openAPIEnd, b.String())
	if err != nil {
		return "", err
	}

	var list []string
	results := []string{"The task's result once it has one, else null:"}
	for i, name := range names {
		list = append(list, name)
		end := ","
		if i == len(names)-1 {
			end = "."
		}
		results = append(results, name+" "+Types[name].Result+end)
	}
	var ok bool
	if doc, ok = replaceAll(doc, `(?m)^(    taskrunner's REST API: submit tasks \()[^)]*\)`, "${1}"+strings.Join(list, ", ")+")"); !ok {
		return "", fmt.Errorf("no sentence %q", "taskrunner's REST API: submit tasks (...)")
	}
	if doc, ok = replaceAll(doc, `(?m)^(          description: Retries after a failed attempt; by default ).*$`, "${1}"+maxRetriesDefaults("%[2]d for %[1]s", " otherwise.")); !ok {
		return "", fmt.Errorf("no description %q", "Retries after a failed attempt; by default ...")
	}
	indent := "            "
	if doc, ok = replaceAll(doc, `(?m)^`+indent+`The task's result once it has one, else null:.*(\n`+indent+`\S.*)*`, indent+strings.Join(results, "\n"+indent)); !ok {
		return "", fmt.Errorf("no description %q", results[0])
	}
	return doc, nil
}

// readmeWithTypes is readme with the task types written from Types.
func readmeWithTypes(readme string) (string, error) {
	var b strings.Builder
	b.WriteString(readmeTableHead)
	for _, name := range TypeNames() {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", name, Types[name].ParamsDoc, Types[name].Doc)
	}
	b.WriteString("\n")
	readme, err := replaceBetween(readme, readmeTableHead, "\n\n", b.String())
	if err != nil {
		return "", err
	}
	var ok bool
	if readme, ok = replaceAll(readme, "(?m)^(\\| `max_retries` \\| ).*?( \\|)", "${1}"+maxRetriesDefaults("%s: %d", "")+"${2}"); !ok {
		return "", fmt.Errorf("no row for max_retries")
	}
	return readme, nil
}

// maxRetriesDefaults lists the types whose max_retries is not 0 by
// default, each formatted with format (name, then count).
func maxRetriesDefaults(format, tail string) string {
	var parts []string
	for _, name := range TypeNames() {
		if n := Types[name].DefaultMaxRetries; n != 0 {
			parts = append(parts, fmt.Sprintf(format, name, n))
		}
	}
	if tail != "" { // the document: "3 for search, 0 otherwise."
		return strings.Join(append(parts, "0"), ", ") + tail
	}
	if len(parts) == 0 { // the README: "0 (search: 3)"
		return "0"
	}
	return "0 (" + strings.Join(parts, ", ") + ")"
}

// writeParamsSchema writes the <Name>Params schema of a type's params.
func writeParamsSchema(b *strings.Builder, name string, params []Param) {
	fmt.Fprintf(b, "    %s:\n      type: object\n      additionalProperties: false\n", paramsSchemaName(name))
	var required []string
	for _, p := range params {
		if p.Required {
			required = append(required, p.Name)
		}
	}
	if len(required) > 0 {
		fmt.Fprintf(b, "      required: [%s]\n", strings.Join(required, ", "))
	}
	b.WriteString("      properties:\n")
	for _, p := range params {
		fmt.Fprintf(b, "        %s:\n          type: %s\n", p.Name, p.Type)
		if p.MaxLength > 0 {
			fmt.Fprintf(b, "          maxLength: %d\n", p.MaxLength)
		}
		if p.Min != nil {
			fmt.Fprintf(b, "          minimum: %s\n", strconv.FormatFloat(*p.Min, 'f', -1, 64))
		}
		if p.Max != nil {
			fmt.Fprintf(b, "          maximum: %s\n", strconv.FormatFloat(*p.Max, 'f', -1, 64))
		}
		fmt.Fprintf(b, "          description: %s\n", yamlString(p.Description))
		if p.Type == "array" {
			b.WriteString("          items:\n            type: string\n")
		}
	}
}

// paramsSchemaName is the name of a type's params schema: "fetch_page"'s
// is FetchPageParams.
func paramsSchemaName(name string) string {
	var b strings.Builder
	for part := range strings.SplitSeq(name, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String() + "Params"
}

// yamlString is s as a YAML scalar: plain when YAML reads it back as the
// same string, else double-quoted.
func yamlString(s string) string {
	if s != "" && !strings.ContainsAny(s[:1], "!&*{}[]|>'\"%@`#,?:-") && !strings.Contains(s, ": ") &&
		!strings.Contains(s, " #") && !strings.HasSuffix(s, ":") && strings.TrimSpace(s) == s {
		return s
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// replaceBetween replaces the text from begin through end (the first end
// after begin) with with.
func replaceBetween(s, begin, end, with string) (string, error) {
	i := strings.Index(s, begin)
	if i < 0 {
		return "", fmt.Errorf("no line %q", strings.TrimSpace(begin))
	}
	j := strings.Index(s[i+len(begin):], end)
	if j < 0 {
		return "", fmt.Errorf("nothing ends what begins with %q", strings.TrimSpace(begin))
	}
	return s[:i] + with + s[i+len(begin)+j+len(end):], nil
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
