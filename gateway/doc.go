// Package gateway is longhaul's Gateway API controller: it turns the
// Gateways of longhaul's GatewayClasses, and the HTTPRoutes and GRPCRoutes
// attached to them, into longhaul listeners (config.Listener, with named
// Backends of Kubernetes endpoints and Routes), and writes back the status
// the API defines.
//
// Translate is the whole translation, a pure function from the objects to
// the listeners and the status; Controller runs it on the informers' caches
// after each change (coalesced), hands the listeners to a callback when
// they change, and writes status only while it holds a Lease, so that every
// replica serves and one writes. The package does not run listeners: its
// output is data, applied by whoever runs the proxy, which reports back
// through Controller.Applied (the listeners' Programmed condition).
//
// One longhaul listener serves each address:port of a Gateway: its
// listeners on one port (with distinct hostnames) share the socket, each
// route's hostnames narrowed to its listener's (route.ListenerHostnames).
// Only HTTP listeners are served for now; HTTPS, TLS, TCP and UDP
// listeners are reported Accepted False, UnsupportedProtocol.
package gateway
