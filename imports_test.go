package taskrunner_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is the import path every package of taskrunner starts with.
const module = "github.com/taskrunner/taskrunner"

// mayImport is which of taskrunner's packages each package may import, by
// its folder ("." is the root package, the domain). The layers, from the
// bottom: the domain and the small packages that know nothing else; the
// adapters of one outside system each (db, cache, fetch, search,
// artifact); how a task type is made (tasktype); the built-in task types
// (builtin), which import only tasktype and what each uses; the worker
// machinery (jobs); the task and schedule services; the HTTP API, which
// reaches the database and River only through the services; the assembly
// (app) and the command (cli); and the programs at the top, which may
// import anything (programs). A package not listed fails the test until
// it is given its place here.
var mayImport = map[string][]string{
	".":                       {"storable"},
	"storable":                nil,
	"callback":                nil,
	"metrics":                 nil,
	"db/dbsqlc":               nil,
	"internal/wire":           nil,
	"search/searchtest":       nil,
	"internal/proctest":       nil,
	"db/internal/riverschema": nil,
	// Their suites are tests (chaos with its build tag), outside these rules.
	"chaos":  nil,
	"deploy": nil,
	// Each setting's default is the constant of the package it configures.
	"config":                  {".", "artifact", "jobs", "search", "task"},
	"fetch":                   {"."},
	"client":                  {"."},
	"cache":                   {"metrics"},
	"search":                  {".", "metrics"},
	"db":                      {".", "db/dbsqlc"},
	"artifact":                {".", "db", "metrics"},
	"tasktype":                {".", "artifact", "metrics", "storable"},
	"builtin":                 {".", "artifact", "fetch", "search", "storable", "tasktype"},
	"jobs":                    {".", "artifact", "callback", "db", "fetch", "metrics", "storable", "tasktype"},
	"task":                    {".", "db", "fetch", "internal/wire", "jobs", "tasktype"},
	"schedule":                {".", "cache", "config", "db", "jobs", "metrics", "task"},
	"httpapi":                 {".", "artifact", "cache", "config", "internal/wire", "metrics", "schedule", "storable", "task", "tasktype"},
	"app":                     {".", "artifact", "builtin", "cache", "config", "db", "fetch", "httpapi", "jobs", "metrics", "schedule", "search", "task", "tasktype"},
	"cli":                     {".", "app", "client", "config", "db", "tasktype"},
	"internal/testenv":        {"db"},
	"internal/cmd/fakesearch": {"search/searchtest"},
}

// programs may import any package of taskrunner's: they put it together.
var programs = []string{"cmd/taskrunner", "bench", "examples/embed"}

// TestImportRules checks every package's own (non-test) files against
// mayImport.
func TestImportRules(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "node_modules") {
			return filepath.SkipDir
		}
		imports, ok, err := ownImports(path)
		if err != nil || !ok {
			return err
		}
		pkg := filepath.ToSlash(path)
		seen[pkg] = true
		if slices.Contains(programs, pkg) {
			return nil
		}
		allowed, listed := mayImport[pkg]
		if !listed {
			t.Errorf("package %s has no place in mayImport: add it, with what it may import", pkg)
			return nil
		}
		for _, imp := range imports {
			if !slices.Contains(allowed, imp) {
				t.Errorf("package %s imports %s, which mayImport does not allow it", pkg, imp)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg := range mayImport {
		if !seen[pkg] {
			t.Errorf("mayImport lists %s, which is no package (any more): remove it", pkg)
		}
	}
}

// ownImports are the packages of taskrunner that the non-test Go files
// in dir import, by folder; ok is false for a folder without such files
// (or with test files or build-tagged suites only).
func ownImports(dir string) (imports []string, ok bool, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, name), nil, parser.ImportsOnly)
		if err != nil {
			return nil, false, err
		}
		ok = true
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			switch {
			case p == module:
				imports = append(imports, ".")
			case strings.HasPrefix(p, module+"/"):
				imports = append(imports, strings.TrimPrefix(p, module+"/"))
			}
		}
	}
	return imports, ok, nil
}
