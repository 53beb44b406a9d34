package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/pflag"
)

// watchDelay coalesces a burst of file events (an editor's write, rename and
// chmod; a ConfigMap's symlink swap) into one reload.
const watchDelay = 100 * time.Millisecond

// Watch reloads the file at path whenever it changes, with the environment
// and flags applied as Load applies them, until ctx ends. It calls onChange
// with each new valid configuration, and onError with the error of a file
// that cannot be read or is invalid, in which case the configuration in
// force stays so. Either may be nil. They are called one at a time, from
// Watch's goroutine.
//
// Watch watches the file's directory, not the file, so that it sees editors
// that write a new file and rename it over the old one, and Kubernetes
// ConfigMap volumes that swap a symlink to a new directory; when path is a
// symlink, the directory of its target is watched too. Events within 100ms
// of each other make one reload. A reload whose content is unchanged, or
// that yields the configuration already in force, calls nothing.
//
// The file as it is when Watch starts is the baseline: Watch does not call
// onChange for it, so load the file with Load before calling Watch, and call
// Watch soon after. Watch returns nil when ctx ends, or an error if the
// watch cannot be set up.
func Watch(ctx context.Context, path string, flags *pflag.FlagSet, onChange func(*Config), onError func(error)) error {
	return watch(ctx, path, flags, onChange, onError, nil)
}

// watch is Watch, calling ready (if not nil) once the baseline is read.
func watch(ctx context.Context, path string, flags *pflag.FlagSet, onChange func(*Config), onError func(error), ready func()) error {
	if path == "" {
		return errors.New("config: watch: no file given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("config: watch %s: %w", path, err)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config: watch %s: %w", path, err)
	}
	defer fw.Close()
	w := &watcher{path: path, abs: abs, dir: filepath.Dir(abs), flags: flags, fw: fw}
	if err := fw.Add(w.dir); err != nil {
		return fmt.Errorf("config: watch %s: %w", path, err)
	}
	w.followTarget()

	// The baseline, read after the watch is set up so that no later change
	// is missed.
	if data, err := os.ReadFile(abs); err == nil {
		w.last = data
		w.good, _ = load(path, data, flags, true)
	}
	if ready != nil {
		ready()
	}

	timer := time.NewTimer(0)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return fmt.Errorf("config: watch %s: watcher closed", path)
			}
			if w.concerns(ev.Name) {
				timer.Reset(watchDelay)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return fmt.Errorf("config: watch %s: watcher closed", path)
			}
			if onError != nil {
				onError(fmt.Errorf("config: watch %s: %w", path, err))
			}
			// Events may have been lost: read the file again.
			timer.Reset(watchDelay)
		case <-timer.C:
			if ctx.Err() != nil {
				return nil
			}
			w.followTarget()
			cfg, err := w.reload()
			switch {
			case err != nil:
				if onError != nil {
					onError(err)
				}
			case cfg != nil:
				if onChange != nil {
					onChange(cfg)
				}
			}
		}
	}
}

type watcher struct {
	path, abs string
	flags     *pflag.FlagSet
	fw        *fsnotify.Watcher
	dir       string  // the file's directory, always watched
	target    string  // the directory of the symlink target, if watched too
	real      string  // the file the path resolves to
	last      []byte  // the content last read
	good      *Config // the configuration in force
}

// reload reads the file and returns a new configuration, nil when nothing
// changed, or an error.
func (w *watcher) reload() (*Config, error) {
	data, err := os.ReadFile(w.abs)
	if err != nil {
		w.last = nil
		return nil, fmt.Errorf("config: %w", err)
	}
	if w.last != nil && bytes.Equal(data, w.last) {
		return nil, nil
	}
	w.last = data
	cfg, err := load(w.path, data, w.flags, true)
	if err != nil {
		return nil, err
	}
	if w.good != nil && reflect.DeepEqual(cfg, w.good) {
		return nil, nil
	}
	w.good = cfg
	return cfg, nil
}

// concerns reports whether an event on name may change the file: the file
// itself, what its symlink points to, or a ConfigMap volume's "..data"
// link swap. Other files in the same directories are ignored.
func (w *watcher) concerns(name string) bool {
	base := filepath.Base(name)
	return name == w.abs || base == filepath.Base(w.abs) || base == "..data" ||
		(w.real != "" && (name == w.real || filepath.Dir(name) == filepath.Dir(w.real) && base == filepath.Base(w.real)))
}

// followTarget watches the directory of the file's symlink target, which a
// write through the link changes without an event in the link's directory,
// and stops watching the previous one.
func (w *watcher) followTarget() {
	real, err := filepath.EvalSymlinks(w.abs)
	if err != nil {
		return
	}
	w.real = real
	dir := filepath.Dir(real)
	if dir == w.target {
		return
	}
	if w.target != "" {
		_ = w.fw.Remove(w.target) // may be gone already
	}
	w.target = ""
	if dir == w.dir {
		return
	}
	if err := w.fw.Add(dir); err == nil {
		w.target = dir
	}
}
