// Package builtin holds taskrunner's own task types (echo, sleep, search,
// fetch), each in a file of its own, defined with package tasktype exactly
// as a user's type is.
//
// # Adding a task type
//
// A task type is one file, named after the type (echo.go is the
// smallest), and a line in Types. The file holds:
//
//   - XArgs, the job args: embedding tasktype.Idempotency, one snake_case
//     JSON field per param, and a Kind method returning the type's name;
//   - XWorker, a plain River worker, whose Work records the result with
//     tasktype.RecordOutput;
//   - DecodeX, strict decoding with tasktype.DecodeParams, then validation
//     (a refusal is a tasktype.ParamError naming the param);
//   - X, the type: tasktype.New with its Doc (Params, each param's OpenAPI
//     schema; ParamsDoc and Summary, its README row; Result, its result's
//     shape; Example, params DecodeX accepts; and, when needed,
//     DefaultMaxRetries and RunKey), DecodeX, and the constructor of XWorker
//     from the services it uses.
//
// Nothing else is edited by hand. Running
//
//	go test ./builtin -run TestTaskTypesAreDocumented -update
//
// (or make generate) writes the type into httpapi/openapi.yaml and into
// the README. Without -update, TestTaskTypesAreDocumented fails while
// either file is out of step, and TestTaskTypesAreComplete fails while the
// type's Doc lacks a field, Params are not XArgs' fields, or DecodeX
// refuses Example.
package builtin

import (
	"github.com/taskrunner/taskrunner/fetch"
	"github.com/taskrunner/taskrunner/tasktype"
)

// Config is the deployment of the built-in types.
type Config struct {
	Search SearchConfig
	// Fetch is what a fetch task may reach, and its body cap.
	Fetch fetch.Config
}

// Types are the built-in task types, configured by cfg.
func Types(cfg Config) []tasktype.Type {
	return []tasktype.Type{
		Echo(),
		Fetch(cfg.Fetch),
		Search(cfg.Search),
		Sleep(),
	}
}

// Registry is a registry of the built-in types alone.
func Registry(cfg Config) *tasktype.Registry {
	r, err := tasktype.NewRegistry(Types(cfg)...)
	if err != nil {
		panic(err) // the built-ins' names are distinct and not reserved
	}
	return r
}
