// Package route is the route table of the data path: the HTTP and gRPC
// routes attached to one listener, or its TCP or TLS routes, in plain
// types that the Gateway API controller and the static configuration
// both translate into.
//
// New validates a Spec (reporting every error, each naming its route,
// rule and match or filter) and builds an immutable Table. MatchHTTP and
// MatchGRPC find the rule for a request, as the Gateway API's HTTPRoute
// and GRPCRoute define it, and pick one of its backends by weight with a
// random number the caller gives (so tests are deterministic). MatchTCP
// and MatchTLS do the same for a connection: its listener's one
// TCPRoute, or the TLSRoute of its ClientHello's server name (exact, then
// the longest wildcard, then a route without hostnames; no server name,
// no route).
//
// Precedence (the API's, first match wins):
//   - Hostname: the routes listing the request's host exactly, then those
//     with a wildcard matching it, the longest first ("*.b.example.com"
//     before "*.example.com"), then the routes without hostnames. A
//     wildcard "*.example.com" stands for one or more labels: it matches
//     "a.example.com" and "a.b.example.com", not "example.com". When no
//     rule of a more specific hostname matches, the less specific ones
//     are tried.
//   - HTTP, within a hostname: an Exact path; then PathPrefix, the longest
//     prefix first; then RegularExpression (an implementation choice, the
//     API leaves it open), the longest pattern first. Then a match with a
//     method before one without, then the most header matches, then the
//     most query parameter matches.
//   - gRPC, within a hostname: the most characters in a matching service,
//     then in a matching method (Exact before RegularExpression before
//     none), then the most header matches.
//   - Ties: the older route (Meta.Created), then "{namespace}/{name}"
//     alphabetically, then the first rule in the route, the first match
//     in the rule.
//
// Invariants, tested: an Exact path match wins over every PathPrefix and
// RegularExpression match for that path within a hostname; a PathPrefix
// "/foo" matches "/foo", "/foo/" and "/foo/bar", never "/foobar"; a
// backend of weight 0 is never picked; the common path (exact host, Exact
// or PathPrefix path, exact header and query matches) allocates nothing.
// Regular expressions are Go's (RE2) and must match the whole value.
package route
