//go:build !linux

package kubetest

import "syscall"

// sysProcAttr: without Pdeathsig, only t.Cleanup stops the children.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
