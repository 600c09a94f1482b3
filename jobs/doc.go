// Package jobs holds taskrunner's task types, each a River job kind with
// typed args and a worker, the middleware that records every attempt as a
// run, and the construction of the River client that works them.
//
// # Adding a task type
//
// A task type is one file in this package, named after the type (echo.go
// is the smallest). It holds:
//
//   - XArgs, the job args: embedding Idempotency, one snake_case JSON field
//     per param, and a Kind method returning the type's name;
//   - XWorker, embedding taskWorker[XArgs] (which applies the task's
//     timeout), whose Work records the result with recordOutput;
//   - an init that calls register with a TaskType: Name; Decode (strict
//     decoding with decodeParams, then validation; a refusal is a
//     *ParamsError naming the field, e.g. "params.msg"); addWorker (adds
//     XWorker, built from Deps, to River's workers); Params (each param's
//     OpenAPI schema); ParamsDoc and Doc (its README row); Result (its
//     result's shape); Example (params Decode accepts); and, when needed,
//     DefaultMaxRetries and RunKey.
//
// Nothing else is edited by hand. Running
//
//	go test ./jobs -run TestTaskTypesAreDocumented -update
//
// (or make generate) writes the type into httpapi/openapi.yaml (the type
// list of its description, the TaskType enum, TaskParams, the type's
// <Name>Params schema, its result's shape and its default max_retries) and
// into the README (its row in the table of task types, its default
// max_retries). Without -update, TestTaskTypesAreDocumented fails while
// either file is out of step, showing the first line that differs, and
// TestTaskTypesAreComplete fails while the TaskType lacks a field, Params
// are not XArgs' fields, or Decode refuses Example.
//
// Jobs that taskrunner enqueues itself, like the periodic retention job,
// are not task types: they are not registered, clients cannot submit them,
// and Workers adds their workers.
package jobs
