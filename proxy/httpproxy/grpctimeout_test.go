package httpproxy

import (
	"testing"
	"time"
)

func TestParseGRPCTimeout(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "300m": 300 * time.Millisecond, "99999999S": 99999999 * time.Second,
		"5u": 5 * time.Microsecond, "7n": 7, "0S": 0,
	} {
		if got, ok := parseGRPCTimeout(v); !ok || got != want {
			t.Errorf("%q: %v %v, want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "S", "1", "123456789S", "99999999H", "1s", "-1S", "1.5S", " 1S", "1SS"} {
		if _, ok := parseGRPCTimeout(v); ok {
			t.Errorf("%q parsed", v)
		}
	}
}

func FuzzParseGRPCTimeout(f *testing.F) {
	for _, s := range []string{"1H", "300m", "99999999H", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseGRPCTimeout(v)
		if ok && (d < 0 || len(v) > 9) {
			t.Fatalf("%q: %v", v, d)
		}
	})
}
