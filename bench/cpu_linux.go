package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's CPU
// times: 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuUse is the CPU time this process and PostgreSQL's processes on this
// machine have used so far.
type cpuUse struct {
	bench, postgres time.Duration
	ok              bool // false when PostgreSQL's processes could not be read
}

// readCPU returns the CPU time used so far by this process and by every
// process named postgres (the server and its backends, autovacuum and
// checkpointer; the children that have exited count through the
// postmaster's children's times). The difference of two readings is what
// a figure cost each side.
func readCPU() cpuUse {
	var u cpuUse
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.bench = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return u
	}
	var ticks int64
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after
		// its closing parenthesis.
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || string(b[open+1:end]) != "postgres" {
			continue
		}
		f := bytes.Fields(b[end+1:])
		// After comm: state is field 3 of stat, so utime (14), stime (15),
		// cutime (16), cstime (17) are f[11..14].
		if len(f) < 15 {
			continue
		}
		for _, s := range f[11:15] {
			n, err := strconv.ParseInt(string(s), 10, 64)
			if err == nil {
				ticks += n
			}
		}
		u.ok = true
	}
	u.postgres = time.Duration(ticks) * time.Second / clockTicks
	return u
}
