package httpapi

import (
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"slices"
	"strings"
	"testing"

	"github.com/taskrunner/taskrunner"
)

// TestEveryCodeHasAStatus walks every Code* constant of taskrunner's
// error.go, so a code added there is found without a list here, and fails
// when one has no HTTP status in codeStatus.
func TestEveryCodeHasAStatus(t *testing.T) {
	t.Parallel()
	file, err := parser.ParseFile(token.NewFileSet(), "../error.go", nil, 0)
	if err != nil {
		t.Fatalf("parse the root package's error.go: %v", err)
	}
	var codes []string
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s is not a string literal", name.Name)
				}
				codes = append(codes, constant.StringVal(constant.MakeFromLiteral(lit.Value, lit.Kind, 0)))
			}
		}
	}
	if !slices.Contains(codes, "internal_error") || !slices.Contains(codes, "task_runtime_exceeded") {
		t.Fatalf("the walk of error.go missed codes it has; found %q", codes)
	}
	seen := map[string]bool{}
	for _, code := range codes {
		if seen[code] {
			t.Errorf("code %q is declared twice", code)
		}
		seen[code] = true
		if _, ok := codeStatus[taskrunner.Code(code)]; !ok {
			t.Errorf("code %q has no HTTP status in codeStatus", code)
		}
	}
	for code := range codeStatus {
		if !seen[string(code)] {
			t.Errorf("codeStatus maps %q, which is no code of error.go", code)
		}
	}
}
