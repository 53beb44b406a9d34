package proxy

import (
	"slices"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
)

// relayRouter picks endpoints for the HTTP/2 relay with the listener's
// picker and key, counting the load on the target while the stream lasts.
// With Affinity, each connection's relayPin routes instead.
type relayRouter struct{ l *HTTPListener }

func (r relayRouter) Route(h *h2relay.RequestHead, tried []string) (string, func(), bool) {
	l := r.l
	p := l.up.Picker()
	if p == nil {
		l.picksNone.Inc()
		return "", nil, false
	}
	t := p.Pick(l.cfg.Key.HashHead(h), triedTargets(p, tried))
	if t == nil {
		l.picksNone.Inc()
		return "", nil, false
	}
	t.Acquire()
	l.picksOK.Inc()
	return t.Endpoint.Address, t.Release, true
}

// triedTargets returns the picker's targets whose addresses the relay
// tried already for a stream.
func triedTargets(p balancer.Picker, tried []string) []*balancer.Target {
	var excluded []*balancer.Target
	if len(tried) > 0 {
		for _, t := range p.Targets() {
			if slices.Contains(tried, t.Endpoint.Address) {
				excluded = append(excluded, t)
			}
		}
	}
	return excluded
}

// relayObserver records the relay's request durations and dial errors in
// the listener's metrics.
type relayObserver struct{ l *HTTPListener }

func (o relayObserver) RequestDone(x h2relay.Outcome) {
	took := x.Duration.Seconds()
	if x.GRPC {
		if x.GRPCStatus == 0 {
			o.l.grpcOK.Observe(took)
		} else {
			o.l.reqTime[0].Observe(took)
		}
		return
	}
	if c := x.Status / 100; c >= 1 && c <= 5 {
		o.l.reqTime[c].Observe(took)
	}
}

func (o relayObserver) Calmed(reason string) {
	o.l.metrics.Abuse.WithLabelValues(o.l.cfg.Name, reason).Inc()
	o.l.log.Debug("client connection closed: over a budget", zap.String("reason", reason))
}

func (o relayObserver) DialFailed(addr string, err error) {
	o.l.metrics.DialErrors.WithLabelValues(o.l.cfg.Name, addr).Inc()
	o.l.log.Debug("endpoint dial failed", zap.String("endpoint", addr), zap.Error(err))
}
