package main

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel send cmd SIGTERM if the bench dies
// first, so a killed bench leaves no server behind.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
