package discovery

import "context"

// Publisher receives each new Snapshot of a source. It is called from one
// goroutine at a time, in order, and must not block for long.
type Publisher func(*Snapshot)

// Source is an origin of endpoints. Run publishes the first Snapshot as soon
// as it is known, then one each time the endpoints change, until ctx ends.
// A source that meets a transient error keeps the last good Snapshot (it
// publishes nothing) and retries; Run returns only when ctx ends or on an
// error that retrying cannot mend.
type Source interface {
	Run(ctx context.Context, publish Publisher) error
}

// Static is a fixed list of endpoints.
type Static struct {
	Snapshot *Snapshot
}

// Run publishes the static snapshot once and waits for ctx to end.
func (s Static) Run(ctx context.Context, publish Publisher) error {
	publish(s.Snapshot)
	<-ctx.Done()
	return nil
}
