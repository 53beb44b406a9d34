package config

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decoder copies the generic tree that viper read (maps, lists, scalars)
// into a Config, field by field, and records a Problem for every unknown key
// and every value of the wrong type instead of stopping at the first one.
// Fields are matched to keys by their mapstructure tag, case-insensitively.
// A field whose value cannot be decoded keeps the value it had (its default).
type decoder struct {
	problems []Problem
	failures []string // paths of the problems
}

var durationType = reflect.TypeFor[time.Duration]()

// decode decodes raw into *out.
func (d *decoder) decode(path string, raw any, out any) {
	d.value(path, raw, reflect.ValueOf(out).Elem())
}

func (d *decoder) fail(path string, value any, msg string) {
	d.problems = append(d.problems, Problem{Path: path, Value: value, Message: msg})
	d.failures = append(d.failures, path)
}

// failed reports whether path is related to a path that failed to decode:
// the same, inside it or containing it. Problems Validate finds at such a
// path come from the value left in place of the undecodable one.
func (d *decoder) failed(path string) bool {
	for _, f := range d.failures {
		if within(path, f) || within(f, path) {
			return true
		}
	}
	return false
}

// within reports whether path is parent or inside it.
func within(path, parent string) bool {
	if parent == "" || path == parent {
		return true
	}
	return strings.HasPrefix(path, parent) && (path[len(parent)] == '.' || path[len(parent)] == '[')
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value decodes raw into v; raw nil (a key given no value) leaves v as it is.
func (d *decoder) value(path string, raw any, v reflect.Value) {
	if raw == nil {
		return
	}
	if v.Type() == durationType {
		if dur, msg := toDuration(raw); msg != "" {
			d.fail(path, raw, msg)
		} else {
			v.SetInt(int64(dur))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(path, raw, v)
	case reflect.Pointer:
		if v.Type().Elem().Kind() != reflect.Struct { // an optional scalar
			p := reflect.New(v.Type().Elem())
			d.value(path, raw, p.Elem())
			v.Set(p)
			return
		}
		if _, ok := asMap(raw); !ok {
			d.fail(path, raw, "must be a mapping")
			return
		}
		p := reflect.New(v.Type().Elem())
		d.value(path, raw, p.Elem())
		v.Set(p)
	case reflect.Slice:
		d.list(path, raw, v)
	case reflect.String:
		if s, ok := toString(raw); ok {
			v.SetString(s)
		} else if _, date := raw.(time.Time); date {
			d.fail(path, raw, "must be a string (YAML read a date: quote it)")
		} else {
			d.fail(path, raw, "must be a string")
		}
	case reflect.Bool:
		if b, ok := toBool(raw); ok {
			v.SetBool(b)
		} else {
			d.fail(path, raw, "must be true or false")
		}
	case reflect.Int, reflect.Int64:
		if n, ok := toInt(raw); ok && !v.OverflowInt(n) {
			v.SetInt(n)
		} else {
			d.fail(path, raw, "must be an integer")
		}
	case reflect.Uint64:
		if n, ok := toUint(raw); ok {
			v.SetUint(n)
		} else {
			d.fail(path, raw, "must be a non-negative integer")
		}
	case reflect.Float64:
		if f, ok := toFloat(raw); ok {
			v.SetFloat(f)
		} else {
			d.fail(path, raw, "must be a number")
		}
	default:
		// Only the kinds above occur in Config.
		panic(fmt.Sprintf("config: no decoder for %s at %s", v.Type(), path))
	}
}

func (d *decoder) structure(path string, raw any, v reflect.Value) {
	m, ok := asMap(raw)
	if !ok {
		d.fail(path, raw, "must be a mapping")
		return
	}
	t := v.Type()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var backends func()
	for _, k := range keys {
		i, name := fieldFor(t, k)
		if i < 0 {
			d.problems = append(d.problems, Problem{Path: join(path, displayKey(k)), Message: "unknown key"})
			continue
		}
		fv := v.Field(i)
		switch {
		case fv.Kind() == reflect.Slice && fv.Type().Elem() == reflect.TypeFor[Listener]():
			d.listeners(join(path, name), m[k], fv)
		case fv.Kind() == reflect.Slice && fv.Type().Elem() == reflect.TypeFor[Backend]():
			// After the listener's own keys: backends start from them.
			raw := m[k]
			backends = func() { d.backends(join(path, name), raw, v.Addr().Interface().(*Listener)) }
		default:
			d.value(join(path, name), m[k], fv)
		}
	}
	if backends != nil {
		backends()
	}
}

// backends decodes a listener's backends, each starting from the
// listener's balance and drain (decoded, defaults included).
func (d *decoder) backends(path string, raw any, l *Listener) {
	items, ok := asList(raw)
	if !ok {
		d.fail(path, raw, "must be a list")
		return
	}
	l.Backends = make([]Backend, len(items))
	for i, item := range items {
		l.Backends[i] = Backend{Balance: l.Balance, Drain: l.Drain}
		p := fmt.Sprintf("%s[%d]", path, i)
		if item == nil {
			d.fail(p, item, "must be a mapping")
			continue
		}
		d.value(p, item, reflect.ValueOf(&l.Backends[i]).Elem())
	}
}

// displayKey returns key as it appears in a path: quoted if it is empty or
// holds anything but letters, digits, '-' and '_'.
func displayKey(key string) string {
	if key == "" || strings.ContainsFunc(key, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) {
		return strconv.Quote(key)
	}
	return key
}

// fieldFor returns the index and the key name of the field of t whose key
// is key, case-insensitively, or -1.
func fieldFor(t reflect.Type, key string) (int, string) {
	for i := range t.NumField() {
		name := t.Field(i).Tag.Get("mapstructure")
		if name != "" && strings.EqualFold(name, key) {
			return i, name
		}
	}
	return -1, ""
}

// listeners decodes a list of listeners, each starting from the listener
// defaults.
func (d *decoder) listeners(path string, raw any, v reflect.Value) {
	items, ok := asList(raw)
	if !ok {
		d.fail(path, raw, "must be a list")
		return
	}
	out := make([]Listener, len(items))
	for i, item := range items {
		out[i] = defaultListener()
		p := fmt.Sprintf("%s[%d]", path, i)
		if item == nil {
			d.fail(p, item, "must be a mapping")
			continue
		}
		d.value(p, item, reflect.ValueOf(&out[i]).Elem())
	}
	v.Set(reflect.ValueOf(out))
}

// list decodes a list of scalars. A string is taken as a comma-separated
// list, as environment variables give lists.
func (d *decoder) list(path string, raw any, v reflect.Value) {
	if s, ok := raw.(string); ok {
		var items []any
		for f := range strings.SplitSeq(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				items = append(items, f)
			}
		}
		raw = items
	}
	items, ok := asList(raw)
	if !ok {
		d.fail(path, raw, "must be a list")
		return
	}
	out := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		p := fmt.Sprintf("%s[%d]", path, i)
		if item == nil {
			d.fail(p, item, "must not be empty")
			continue
		}
		d.value(p, item, out.Index(i))
	}
	v.Set(out)
}

func asMap(raw any) (map[string]any, bool) {
	switch m := raw.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	return nil, false
}

func asList(raw any) ([]any, bool) {
	if l, ok := raw.([]any); ok {
		return l, true
	}
	rv := reflect.ValueOf(raw)
	if rv.Kind() != reflect.Slice {
		return nil, false
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, true
}

// toString accepts strings and integers (a Kubernetes port given by number).
func toString(raw any) (string, bool) {
	switch x := raw.(type) {
	case string:
		return x, true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	}
	return "", false
}

func toBool(raw any) (bool, bool) {
	switch x := raw.(type) {
	case bool:
		return x, true
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		return b, err == nil
	}
	return false, false
}

// toInt accepts integers, floats with no fraction (1e5) and strings holding
// an integer (from the environment).
func toInt(raw any) (int64, bool) {
	switch x := raw.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case float64:
		if x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func toUint(raw any) (uint64, bool) {
	switch x := raw.(type) {
	case uint64:
		return x, true
	case float64:
		if x != math.Trunc(x) || x < 0 || x >= math.MaxUint64 {
			return 0, false
		}
		return uint64(x), true
	case string:
		n, err := strconv.ParseUint(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	n, ok := toInt(raw)
	if !ok || n < 0 {
		return 0, false
	}
	return uint64(n), true
}

func toFloat(raw any) (float64, bool) {
	switch x := raw.(type) {
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	n, ok := toInt(raw)
	return float64(n), ok
}

// toDuration accepts Go duration strings ("2s", "1h30m"). A bare number
// other than 0 is refused: "connect: 2" is more likely meant as seconds than
// as nanoseconds.
func toDuration(raw any) (time.Duration, string) {
	const want = "must be a duration such as 2s, 500ms or 1h"
	if s, ok := raw.(string); ok {
		dur, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return 0, want
		}
		return dur, ""
	}
	if n, ok := toInt(raw); ok && n == 0 {
		return 0, ""
	}
	if _, ok := toFloat(raw); ok {
		return 0, "must be a duration with a unit, such as 2s"
	}
	return 0, want
}
