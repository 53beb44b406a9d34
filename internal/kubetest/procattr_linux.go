package kubetest

import "syscall"

// sysProcAttr makes the kernel kill the child when the thread that started
// it dies (the test binary exiting or crashing), so no etcd or API server
// outlives a panicking test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
