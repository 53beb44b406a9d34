package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// MinTokenLength is the shortest bearer token ReadToken accepts.
const MinTokenLength = 16

// ReadToken reads a bearer token from a file (a mounted Secret, say): the
// file's content without surrounding white space, at least MinTokenLength
// characters, none of them white space or control characters.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("debug token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < MinTokenLength {
		return "", fmt.Errorf("debug token in %s: %d characters, want at least %d", path, len(tok), MinTokenLength)
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fmt.Errorf("debug token in %s: holds white space or control characters", path)
	}
	return tok, nil
}

// requireToken serves h only to requests that carry token as a bearer
// token. The comparison takes the same time whatever the token sent: both
// are hashed first, so that neither the content nor the length leaks.
func requireToken(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearerToken(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="longhaul debug"`)
			http.Error(w, "unauthorized: send Authorization: Bearer <admin.debugTokenFile's token>", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearerToken returns the token of an Authorization header value
// "Bearer TOKEN" (the scheme case-insensitive, RFC 7235), and whether there
// was one.
func bearerToken(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	return tok, tok != ""
}
