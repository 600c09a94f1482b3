// Package jobs is the worker machinery of taskrunner: the River client
// that inserts and works tasks of the types in a tasktype.Registry, the
// middleware that records every attempt as a run (with its progress,
// metrics and notes), and taskrunner's own jobs: the run sweep, retention,
// callback delivery and schedule ticks.
//
// Task types are not defined here: see package tasktype for how a type is
// made, and package builtin for taskrunner's own.
//
// Jobs that taskrunner enqueues itself (IsInternal) are not task types:
// clients cannot submit them, no task view shows them, and Workers adds
// their workers.
package jobs
