// Package proc builds longhaul and runs the programs a benchmark measures:
// each in the foreground, its output in a log file, with its CPU and
// memory read from /proc.
package proc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/procstat"
)

// Proc is a program run in the foreground. The zero Argv is no program
// (a benchmark's "direct" target): Start does nothing and the figures are
// zero.
type Proc struct {
	// Name names the program in errors.
	Name string
	// Argv is the command line.
	Argv []string
	// Dir is the working directory; output.log in it gets the program's
	// stdout and stderr.
	Dir  string
	cmd  *exec.Cmd
	done chan error
}

// Start runs the program and waits until every address in ready accepts a
// connection, for at most limit. The program is killed if this process
// dies.
func (p *Proc) Start(ctx context.Context, ready []string, limit time.Duration) error {
	if p.Argv == nil {
		return nil
	}
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log file: %w", p.Name, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = p.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %s: %w", p.Name, p.Argv[0], err)
	}
	p.cmd = cmd
	p.done = make(chan error, 1)
	go func() { p.done <- cmd.Wait() }()
	if err := p.waitReady(ctx, ready, limit); err != nil {
		p.Stop()
		return fmt.Errorf("%s: %w (see %s)", p.Name, err, p.logPath())
	}
	return nil
}

func (p *Proc) logPath() string { return filepath.Join(p.Dir, "output.log") }

func (p *Proc) waitReady(ctx context.Context, addrs []string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, a := range addrs {
		for {
			select {
			case err := <-p.done:
				p.done <- err
				return fmt.Errorf("exited before listening: %v", err)
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("not listening on %s after %v: %w", a, limit, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Stop sends SIGTERM, then SIGKILL if the program has not ended in 5 s.
func (p *Proc) Stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// Signal sends sig to the running program; an error if none runs.
func (p *Proc) Signal(sig os.Signal) error {
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Pid is the program's root process, 0 when none runs.
func (p *Proc) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Sample reads the CPU and RSS summed over the program's process tree;
// zero when none runs.
func (p *Proc) Sample() (procstat.Sample, error) {
	if p.cmd == nil {
		return procstat.Sample{}, nil
	}
	s, err := procstat.Tree("/proc", p.Pid())
	if err != nil {
		return s, fmt.Errorf("%s: %w", p.Name, err)
	}
	return s, nil
}

// Alive reports an error, with the end of its output, if the program has
// exited.
func (p *Proc) Alive() error {
	if p.cmd == nil {
		return nil
	}
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited: %v; last output: %s", p.Name, err, p.LogTail())
	default:
		return nil
	}
}

// LogTail is the last 600 bytes of the program's output.
func (p *Proc) LogTail() string {
	b, err := os.ReadFile(p.logPath())
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = s[len(s)-600:]
	}
	return s
}
