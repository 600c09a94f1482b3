// Package task is the task service: submitting, reading, listing and
// cancelling tasks, and the bulk actions over them. A task is a River job;
// the service turns requests into River inserts, checked against the task
// types of its registry, and River rows into the API's view of a task. The
// domain it speaks, the task and its errors, is the root package's.
package task
