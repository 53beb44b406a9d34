package httpproxy

import (
	"math"
	"net/http"
	"time"
)

// deadlineSlack is how early before a gRPC call's deadline a broken
// endpoint stream still counts as the deadline passing: the endpoint's
// timer, started when it read the request, can fire first.
const deadlineSlack = 20 * time.Millisecond

// grpcDeadline returns when a gRPC call that arrived at start times out
// by its grpc-timeout header; zero without one or with one that does not
// parse.
func grpcDeadline(h http.Header, start time.Time) time.Time {
	v := h["Grpc-Timeout"]
	if len(v) != 1 {
		return time.Time{}
	}
	d, ok := parseGRPCTimeout(v[0])
	if !ok {
		return time.Time{}
	}
	return start.Add(d)
}

// parseGRPCTimeout parses a grpc-timeout value as gRPC over HTTP/2 defines
// it: at most 8 ASCII digits and a unit, H M S m u or n; ok is false for
// anything else, and for a timeout too long for a Duration.
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64
	for _, c := range []byte(v[:len(v)-1]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > int64(math.MaxInt64/unit) {
		return 0, false // past what a Duration holds (99999999H): no deadline to speak of
	}
	return time.Duration(n) * unit, true
}
