package readiness

import (
	"errors"
	"fmt"
	"syscall"
)

// Pool spreads parked sockets over several Pollers, each with its own
// goroutine, so that wake-ups that do work there (a relay's inline
// messages) can use as many CPUs as there are Pollers. A socket always
// goes to the same Poller (chosen by its descriptor number), so that each
// of its waits after the first re-arms it in the one epoll set that holds
// it. Safe for concurrent use.
type Pool struct {
	ps []*Poller
}

// NewPool creates a Pool of n Pollers (at least one).
func NewPool(n int) (*Pool, error) {
	p := &Pool{ps: make([]*Poller, max(n, 1))}
	for i := range p.ps {
		var err error
		if p.ps[i], err = New(); err != nil {
			p.ps = p.ps[:i]
			return nil, errors.Join(fmt.Errorf("readiness: poller %d of %d: %w", i+1, n, err), p.Close())
		}
	}
	return p, nil
}

// Park is Poller.Park on the socket's Poller.
func (p *Pool) Park(rc syscall.RawConn, wake func()) (interface{ Cancel() bool }, error) {
	var fd uintptr
	if err := rc.Control(func(f uintptr) { fd = f }); err != nil {
		return nil, fmt.Errorf("readiness: parking a socket: %w", err)
	}
	return p.ps[fd%uintptr(len(p.ps))].Park(rc, wake)
}

// Parked returns the number of sockets parked now, over every Poller.
func (p *Pool) Parked() int {
	n := 0
	for _, q := range p.ps {
		n += q.Parked()
	}
	return n
}

// Close closes every Poller (see Poller.Close).
func (p *Pool) Close() error {
	var errs []error
	for _, q := range p.ps {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}
