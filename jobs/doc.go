// Package jobs holds taskrunner's task types, each a River job kind with
// typed args and a worker, the middleware that records every attempt as a
// run, and the construction of the River client that works them.
//
// # Adding a task type
//
// A task type is one file in this package, named after the type (echo.go
// is the smallest). It holds:
//
//   - XArgs, the job args: snake_case JSON, embedding Idempotency, with a
//     Kind method returning the type's name;
//   - XWorker, embedding taskWorker[XArgs] (which applies the task's
//     timeout), whose Work records the result with recordOutput;
//   - an init that calls register with a TaskType: Name, Decode (strict
//     params decoding with decodeParams, then validation; a refusal is a
//     *ParamsError naming the field, e.g. "params.msg"), addWorker (adds
//     XWorker, built from Deps, to River's workers), Params (the params'
//     OpenAPI schema), ParamsDoc and Doc (the README row), Example (params
//     that Decode accepts), and, when needed, DefaultMaxRetries and RunKey.
//
// Nothing else is edited by hand. Running
//
//	go test ./jobs -run TestTaskTypesAreDocumented -update
//
// writes the type into httpapi/openapi.yaml (the TaskType enum, the
// TaskParams list and its <Name>Params schema) and the README (its row in
// the table of task types, and its default max_retries when not 0 there
// and in the document's max_retries description); without -update the
// test fails while either file is out of step, and names what is missing.
// The test also fails until the document's description of a task's result
// mentions the type, since a result's shape is the worker's own.
//
// Jobs that taskrunner enqueues itself, like the periodic retention job,
// are not task types: they are not registered, clients cannot submit them,
// and Workers adds their workers.
package jobs
