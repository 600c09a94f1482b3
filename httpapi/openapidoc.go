package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/taskrunner/taskrunner/tasktype"
)

// The task types' part of the OpenAPI document's schemas lies between
// these lines.
const (
	openAPITypesBegin = "    # Task types: written from the registry (go test ./builtin -run TestTaskTypesAreDocumented -update).\n"
	openAPITypesEnd   = "    # End of task types.\n"
)

// OpenAPIDocument is the API's OpenAPI document showing types: its
// description's list of types, the TaskType enum, TaskParams, each type's
// <Name>Params schema with its example, the shapes of their results and
// their default max_retries. A server serves the document of the types it
// runs; the committed openapi.yaml is that of the built-in types.
func OpenAPIDocument(types *tasktype.Registry) ([]byte, error) {
	return openAPIDocumentWith(types, nil)
}

// ExternalDoc is a task type defined at run time as the OpenAPI document
// shows it: its name and its params' JSON Schema, as it was put.
type ExternalDoc struct {
	Name   string
	Schema json.RawMessage
}

// openAPIDocumentWith is the document showing types and, beside them, the
// types defined at run time: in the TaskType enum, in TaskParams, and
// each with a <Name>Params schema that is its params_schema as given
// (JSON is YAML).
func openAPIDocumentWith(types *tasktype.Registry, externals []ExternalDoc) ([]byte, error) {
	doc, err := withTypes(string(openAPIDocument), types, externals)
	if err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	return []byte(doc), nil
}

// withTypes is doc with the task types written from types.
func withTypes(doc string, types *tasktype.Registry, externals []ExternalDoc) (string, error) {
	names := types.Names()
	// Each schema's name, unique: a type defined at run time whose name
	// makes another's (echo_ and echo both make EchoParams) gets a number.
	schemaNames := make([]string, 0, len(names)+len(externals))
	taken := map[string]bool{}
	unique := func(name string) string {
		s := ParamsSchemaName(name)
		for i := 2; taken[s]; i++ {
			s = strings.TrimSuffix(ParamsSchemaName(name), "Params") + strconv.Itoa(i) + "Params"
		}
		taken[s] = true
		schemaNames = append(schemaNames, s)
		return s
	}
	allNames, enum := slices.Clone(names), slices.Clone(names)
	for _, name := range names {
		unique(name)
	}
	for _, e := range externals {
		allNames = append(allNames, e.Name)
		// Quoted: YAML would read a type named null or true as no string.
		enum = append(enum, strconv.Quote(e.Name))
		unique(e.Name)
	}
	var b strings.Builder
	b.WriteString(openAPITypesBegin)
	fmt.Fprintf(&b, "    TaskType:\n      type: string\n      enum: [%s]\n", strings.Join(enum, ", "))
	b.WriteString("    TaskParams:\n      description: The type's params (unknown params are refused).\n      anyOf:\n")
	for _, s := range schemaNames {
		fmt.Fprintf(&b, "        - $ref: \"#/components/schemas/%s\"\n", s)
	}
	b.WriteString("        - $ref: \"#/components/schemas/ExternalTaskParams\"\n")
	for _, t := range types.Types() {
		writeParamsSchema(&b, t)
	}
	for i, e := range externals {
		var compact bytes.Buffer
		if err := json.Compact(&compact, e.Schema); err != nil {
			return "", fmt.Errorf("params_schema of %s: %w", e.Name, err)
		}
		fmt.Fprintf(&b, "    %s: %s\n", schemaNames[len(names)+i], compact.Bytes())
	}
	b.WriteString(openAPITypesEnd)
	doc, err := replaceBetween(doc, openAPITypesBegin, openAPITypesEnd, b.String())
	if err != nil {
		return "", err
	}

	results := []string{"The task's result once it has one, else null:"}
	for i, t := range types.Types() {
		end := ","
		if i == len(names)-1 {
			end = "."
		}
		results = append(results, t.Name+" "+t.Result+end)
	}
	var retries []string
	for _, t := range types.Types() {
		if t.DefaultMaxRetries != 0 {
			retries = append(retries, fmt.Sprintf("%d for %s", t.DefaultMaxRetries, t.Name))
		}
	}
	var ok bool
	if doc, ok = replaceAll(doc, `(?m)^(    taskrunner's REST API: submit tasks \()[^)]*\)`, "${1}"+strings.Join(allNames, ", ")+")"); !ok {
		return "", fmt.Errorf("no sentence %q", "taskrunner's REST API: submit tasks (...)")
	}
	if doc, ok = replaceAll(doc, `(?m)^(          description: Retries after a failed attempt; by default ).*$`, "${1}"+strings.Join(append(retries, "0"), ", ")+" otherwise."); !ok {
		return "", fmt.Errorf("no description %q", "Retries after a failed attempt; by default ...")
	}
	indent := "            "
	if doc, ok = replaceAll(doc, `(?m)^`+indent+`The task's result once it has one, else null:.*(\n`+indent+`\S.*)*`, indent+strings.Join(results, "\n"+indent)); !ok {
		return "", fmt.Errorf("no description %q", results[0])
	}
	return doc, nil
}

// writeParamsSchema writes the <Name>Params schema of t's params, with
// its example.
func writeParamsSchema(b *strings.Builder, t tasktype.Type) {
	fmt.Fprintf(b, "    %s:\n      type: object\n      additionalProperties: false\n", ParamsSchemaName(t.Name))
	var required []string
	for _, p := range t.Params {
		if p.Required {
			required = append(required, p.Name)
		}
	}
	if len(required) > 0 {
		fmt.Fprintf(b, "      required: [%s]\n", strings.Join(required, ", "))
	}
	if t.Example != "" {
		// JSON is YAML: the example as the client sends it.
		fmt.Fprintf(b, "      example: %s\n", t.Example)
	}
	b.WriteString("      properties:\n")
	for _, p := range t.Params {
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

// ParamsSchemaName is the name of a type's params schema in the OpenAPI
// document: "fetch_page"'s is FetchPageParams.
func ParamsSchemaName(name string) string {
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
