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
	Address     string `json:"address"`
	Ready       *bool  `json:"ready,omitempty"`
	Serving     *bool  `json:"serving,omitempty"`
	Terminating *bool  `json:"terminating,omitempty"`
	Weight      uint32 `json:"weight,omitempty"`
	Zone        string `json:"zone,omitempty"`
	Node        string `json:"node,omitempty"`
	Pod         string `json:"pod,omitempty"`
}

// ParseEndpointsFile parses an endpoints file: a YAML (or JSON) list of
// FileEndpoint, or a map with an "endpoints" key holding that list. Unknown
// fields are errors, so that a typo does not pass silently.
func ParseEndpointsFile(service string, data []byte) (*Snapshot, error) {
	var list []FileEndpoint
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] != '[' && trimmed[0] != '-' {
		var doc struct {
			Endpoints []FileEndpoint `json:"endpoints"`
		}
		if err := yaml.UnmarshalStrict(data, &doc); err != nil {
			return nil, fmt.Errorf("parse endpoints: %w", err)
		}
		list = doc.Endpoints
	} else if err := yaml.UnmarshalStrict(data, &list); err != nil {
		return nil, fmt.Errorf("parse endpoints: %w", err)
	}
	eps := make([]Endpoint, 0, len(list))
	for _, fe := range list {
		r, s, t := Conditions{Ready: fe.Ready, Serving: fe.Serving, Terminating: fe.Terminating}.Resolve()
		eps = append(eps, Endpoint{Address: fe.Address, Ready: r, Serving: s, Terminating: t,
			Weight: fe.Weight, Zone: fe.Zone, Node: fe.Node, Pod: fe.Pod})
	}
	return NewSnapshot(service, eps)
}

// File is a Source that reads an endpoints file (see ParseEndpointsFile) and
// publishes a new Snapshot each time its content changes. A bad edit keeps
// the last good Snapshot in force and is logged. The directory is watched,
// so rename-writes by editors and ConfigMap symlink swaps are seen; a slow
// poll backs the watch up.
type File struct {
	Service string
	Path    string
	Logger  *zap.Logger
	// Poll is the interval of the backup poll; 0 means 2s.
	Poll time.Duration
	// OnError, if set, is called for each bad read (for metrics).
	OnError func(error)
}

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
	last, raw, err := f.read(nil)
	if err != nil {
		return err
	}
	publish(last)
	poll := f.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var settle <-chan time.Time // coalesces a burst of events into one read
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			_ = ev
			if settle == nil {
				settle = time.After(50 * time.Millisecond)
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
		snap, data, err := f.read(raw)
		switch {
		case err != nil:
			if f.OnError != nil {
				f.OnError(err)
			}
			log.Error("endpoints file rejected; keeping the last good endpoints",
				zap.String("path", f.Path), zap.Error(err))
		case snap != nil && !snap.Equal(last):
			last, raw = snap, data
			publish(snap)
		default:
			raw = data
		}
	}
}

// read returns a nil Snapshot when the content equals prev.
func (f *File) read(prev []byte) (*Snapshot, []byte, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, prev, fmt.Errorf("read endpoints file: %w", err)
	}
	if prev != nil && bytes.Equal(data, prev) {
		return nil, prev, nil
	}
	snap, err := ParseEndpointsFile(f.Service, data)
	if err != nil {
		return nil, prev, fmt.Errorf("endpoints file %s: %w", f.Path, err)
	}
	return snap, data, nil
}
