// Package certs holds the certificates a TLS listener serves and picks one
// for each handshake by the client's server name (SNI).
//
// A Set is immutable: built once by NewSet from Entries, each a certificate
// Source and the hostnames it serves. A Store holds the current Set in an
// atomic.Pointer; the handshake path reads it without a lock, and a new Set
// (a rotated Secret, a reloaded file) replaces it whole with Store.Set, so a
// handshake sees either the old certificates or the new ones, never a mix.
// Connections already established keep the certificate they were given.
//
// Selection follows the Gateway API's listener hostnames: an exact name
// first, then the wildcard ("*.example.com") with the longest suffix, which
// covers any number of labels before it; then the default (an Entry without
// hostnames), which also serves clients that send no server name; then the
// first Entry, so that a handshake always gets some certificate.
package certs
