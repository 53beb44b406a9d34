package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	"sigs.k8s.io/yaml"
)

// FileEndpoint is one entry of an endpoints file. Conditions left out take
// the EndpointSlice defaults (see Conditions.Resolve).
type FileEndpoint struct {
	Address string `json:"address"`
	// ID is the endpoint's hash identity (discovery.Endpoint.ID); left out,
	// the address. Give a member that may come back under another address
	// a stable id, so that its keys stay with it.
	ID          *string `json:"id,omitempty"`
	Ready       *bool   `json:"ready,omitempty"`
	Serving     *bool   `json:"serving,omitempty"`
	Terminating *bool   `json:"terminating,omitempty"`
	Weight      uint32  `json:"weight,omitempty"`
	Zone        string  `json:"zone,omitempty"`
	Node        string  `json:"node,omitempty"`
	Pod         string  `json:"pod,omitempty"`
	// Revision names the version the endpoint runs (discovery.Endpoint.
	// Revision): while an endpoint of one revision is terminating, new
	// sessions prefer endpoints of other revisions.
	Revision string `json:"revision,omitempty"`
	// KillTime (RFC 3339) is when the endpoint's pod will be killed, as a
	// terminating pod's deletionTimestamp tells the Kubernetes source: drain
	// then moves its sessions by KillTime minus the kill margin. Only a
	// terminating endpoint may have one.
	KillTime *time.Time `json:"killTime,omitempty"`
}

// fileDocument is the map form of an endpoints file.
type fileDocument struct {
	Endpoints []FileEndpoint `json:"endpoints"`
	// AllowEmpty makes an empty endpoints list mean "no endpoints" rather
	// than a file cut short.
	AllowEmpty bool `json:"allowEmpty,omitempty"`
}

// ErrEmptyEndpoints reports an endpoints file that lists no endpoint and
// does not say that it means to.
var ErrEmptyEndpoints = errors.New("no endpoints listed (a file truncated or not yet written?); " +
	"write \"endpoints: []\" with \"allowEmpty: true\" to mean no endpoints")

// ParseEndpointsFile parses an endpoints file: a YAML (or JSON) list of
// FileEndpoint, or a map with an "endpoints" key holding that list. Unknown
// fields are errors, so that a typo does not pass silently.
//
// A file that lists no endpoint (empty, blank, comments only, an empty
// list) is refused with ErrEmptyEndpoints, since it is far more often a
// file caught mid-write than a wish to send nowhere; only the map form
// with "allowEmpty: true" yields an empty Snapshot.
func ParseEndpointsFile(service string, data []byte) (*Snapshot, error) {
	var doc fileDocument
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, ErrEmptyEndpoints
	}
	if trimmed[0] != '[' && trimmed[0] != '-' {
		if err := yaml.UnmarshalStrict(data, &doc); err != nil {
			return nil, fmt.Errorf("parse endpoints: %w", err)
		}
	} else if err := yaml.UnmarshalStrict(data, &doc.Endpoints); err != nil {
		return nil, fmt.Errorf("parse endpoints: %w", err)
	}
	if len(doc.Endpoints) == 0 && !doc.AllowEmpty {
		return nil, ErrEmptyEndpoints
	}
	eps := make([]Endpoint, 0, len(doc.Endpoints))
	for i, fe := range doc.Endpoints {
		r, s, t := Conditions{Ready: fe.Ready, Serving: fe.Serving, Terminating: fe.Terminating}.Resolve()
		e := Endpoint{Address: fe.Address, Ready: r, Serving: s, Terminating: t,
			Weight: fe.Weight, Zone: fe.Zone, Node: fe.Node, Pod: fe.Pod, Revision: fe.Revision}
		if fe.ID != nil {
			if err := ValidID(*fe.ID); err != nil {
				return nil, fmt.Errorf("endpoint %d (%s): %w", i, fe.Address, err)
			}
			e.ID = *fe.ID
		}
		if fe.KillTime != nil {
			if !t {
				return nil, fmt.Errorf("endpoint %d (%s): killTime on an endpoint that is not terminating", i, fe.Address)
			}
			e.KillTime = *fe.KillTime
		}
		eps = append(eps, e)
	}
	return NewSnapshot(service, eps)
}

// File is a Source that reads an endpoints file (see ParseEndpointsFile) and
// publishes a new Snapshot each time its content changes. A bad edit (an
// empty file among them) keeps the last good Snapshot in force and is
// logged once, until the content changes again.
//
// The directory is watched, so that rename-writes by editors and ConfigMap
// volume symlink swaps ("..data") are seen; events on other files in it are
// ignored. A burst of events makes one read, and a content read before is
// not parsed again. A slow poll backs the watch up.
type File struct {
	Service string
	Path    string
	Logger  *zap.Logger
	// Poll is the interval of the backup poll; 0 means 2s.
	Poll time.Duration
	// OnError, if set, is called once for each rejected content (for
	// metrics), and once for each distinct read error.
	OnError func(error)

	// onReread, if set (tests), is called each time Run reads the file again
	// after the first read.
	onReread func()
}

// settleDelay coalesces a burst of events (an editor's write, rename and
// chmod; a ConfigMap's swap) into one read.
const settleDelay = 50 * time.Millisecond

// Run implements Source. It returns an error at once if the first read fails,
// so that a bad file is refused at start rather than served empty.
func (f *File) Run(ctx context.Context, publish Publisher) error {
	log := f.Logger
	if log == nil {
		log = zap.NewNop()
	}
	// Watch before the first read, so that an edit made right after the
	// first Snapshot is published is never missed.
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", f.Path, err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(f.Path)); err != nil {
		return fmt.Errorf("watch %s: %w", filepath.Dir(f.Path), err)
	}
	st := &fileState{}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return fmt.Errorf("read endpoints file: %w", err)
	}
	first, err := f.parse(data)
	if err != nil {
		return err
	}
	st.last, st.seen = first, data
	publish(first)
	poll := f.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if settle == nil && f.concerns(ev.Name) {
				settle = time.After(settleDelay)
			}
			continue
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			log.Warn("endpoints file watch error", zap.String("path", f.Path), zap.Error(err))
			continue
		case <-settle:
		case <-tick.C:
		}
		settle = nil
		snap, err := f.reread(st)
		switch {
		case err != nil:
			if f.OnError != nil {
				f.OnError(err)
			}
			log.Error("endpoints file rejected; keeping the last good endpoints",
				zap.String("path", f.Path), zap.Error(err))
		case snap != nil:
			publish(snap)
		}
	}
}

// fileState is what File.Run remembers between reads.
type fileState struct {
	last    *Snapshot // in force
	seen    []byte    // the content last parsed, good or bad
	readErr string    // the last read error, "" after a good read
}

// reread reads the file again. It returns a Snapshot to publish when the
// content changed into one that differs from the one in force, and an error
// only the first time a content is rejected (or a read fails the same way),
// so that a bad file is reported once, not on every poll.
func (f *File) reread(st *fileState) (*Snapshot, error) {
	if f.onReread != nil {
		f.onReread()
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		err = fmt.Errorf("read endpoints file: %w", err)
		if err.Error() == st.readErr {
			return nil, nil
		}
		st.readErr, st.seen = err.Error(), nil // the same content back is news
		return nil, err
	}
	st.readErr = ""
	if st.seen != nil && bytes.Equal(data, st.seen) {
		return nil, nil
	}
	st.seen = data
	snap, err := f.parse(data)
	if err != nil {
		return nil, err
	}
	if snap.Equal(st.last) {
		return nil, nil
	}
	st.last = snap
	return snap, nil
}

// parse parses data as the endpoints file's content.
func (f *File) parse(data []byte) (*Snapshot, error) {
	snap, err := ParseEndpointsFile(f.Service, data)
	if err != nil {
		return nil, fmt.Errorf("endpoints file %s: %w", f.Path, err)
	}
	return snap, nil
}

// concerns reports whether an event on name may change the file: the file
// itself (written, or renamed over) or a ConfigMap volume's "..data" link
// swap, which changes what the file's symlink resolves to. Events on other
// files in the directory (a log file beside it) are ignored.
func (f *File) concerns(name string) bool {
	base := filepath.Base(name)
	return base == filepath.Base(f.Path) || base == "..data"
}
