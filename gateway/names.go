package gateway

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// namer hands out DNS labels (at most 63 lowercase letters, digits and
// '-', starting and ending with a letter or digit) for keys, each label
// unique among the namer's. The same key always gets the same label; a
// label is the key's readable parts joined by '-', with a hash of the key
// appended when the parts are too long or another key already holds them.
// Callers give keys in a deterministic order so that labels are stable.
type namer struct {
	byKey   map[string]string
	byLabel map[string]string
}

func newNamer() *namer {
	return &namer{byKey: map[string]string{}, byLabel: map[string]string{}}
}

// name returns key's label, built from parts.
func (n *namer) name(key string, parts ...string) string {
	if l, ok := n.byKey[key]; ok {
		return l
	}
	base := sanitize(strings.Join(parts, "-"))
	label := base
	if len(label) > 63 || n.byLabel[label] != "" {
		h := fnv.New32a()
		h.Write([]byte(key))
		suffix := fmt.Sprintf("-%08x", h.Sum32())
		label = strings.TrimRight(base[:min(len(base), 63-len(suffix))], "-") + suffix
		for i := 2; n.byLabel[label] != ""; i++ { // a hash collision: count on
			s := fmt.Sprintf("%s-%d", suffix, i)
			label = strings.TrimRight(base[:min(len(base), 63-len(s))], "-") + s
		}
	}
	n.byKey[key], n.byLabel[label] = label, key
	return label
}

// sanitize lowercases s, turns every character a DNS label cannot hold
// into '-' and trims '-' at both ends; it never returns "".
func sanitize(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	out := strings.Trim(string(b), "-")
	if out == "" {
		return "x"
	}
	return out
}
