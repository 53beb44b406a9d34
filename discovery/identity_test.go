package discovery

import (
	"strings"
	"testing"
)

// TestParseEndpointsFileID: an entry's id becomes the endpoint's ID; left
// out, the ID is empty (the address); IDs may repeat (an old and a new
// member while one replaces the other).
func TestParseEndpointsFileID(t *testing.T) {
	s, err := ParseEndpointsFile("f", []byte(`
endpoints:
  - {address: 127.0.0.1:3, id: db-2}
  - {address: 127.0.0.1:1, id: "db/0:primary"}
  - {address: 127.0.0.1:2}
  - {address: 127.0.0.1:4, id: db-2, ready: false, terminating: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, 0, len(s.Endpoints))
	for _, e := range s.Endpoints {
		got = append(got, e.Address+"="+e.ID)
	}
	want := "127.0.0.1:1=db/0:primary 127.0.0.1:2= 127.0.0.1:3=db-2 127.0.0.1:4=db-2"
	if strings.Join(got, " ") != want {
		t.Errorf("endpoints %v, want %s", got, want)
	}
}

// TestParseEndpointsFileBadID: a bad id is refused with an error that names
// the entry and says what is wrong with the id.
func TestParseEndpointsFileBadID(t *testing.T) {
	for name, tt := range map[string]struct{ in, want string }{
		"empty":     {`[{address: 127.0.0.1:1, id: ""}]`, `endpoint 0 (127.0.0.1:1): id is empty`},
		"space":     {`[{address: 127.0.0.1:1}, {address: 127.0.0.1:2, id: "db 2"}]`, `endpoint 1 (127.0.0.1:2): id "db 2": byte 2 is ' ', want printable ASCII`},
		"control":   {`[{address: 127.0.0.1:1, id: "db\t2"}]`, `byte 2 is '\t'`},
		"non-ascii": {`[{address: 127.0.0.1:1, id: "dé"}]`, `want printable ASCII without spaces`},
		"too long":  {`[{address: 127.0.0.1:1, id: ` + strings.Repeat("a", MaxIDLength+1) + `}]`, `254 bytes, want at most 253`},
		"list":      {`[{address: 127.0.0.1:1, id: [a]}]`, `parse endpoints`},
	} {
		s, err := ParseEndpointsFile("f", []byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, %v; want an error containing %q", name, s, err, tt.want)
		}
	}
	if _, err := ParseEndpointsFile("f", []byte(`[{address: 127.0.0.1:1, id: `+strings.Repeat("a", MaxIDLength)+`}]`)); err != nil {
		t.Errorf("id of %d bytes: %v", MaxIDLength, err)
	}
	// A bare number is YAML for a string where a string is expected.
	if s, err := ParseEndpointsFile("f", []byte(`[{address: 127.0.0.1:1, id: 7}]`)); err != nil || s.Endpoints[0].ID != "7" {
		t.Errorf("id: 7: got %v, %v; want the ID \"7\"", s, err)
	}
}

// TestNewSnapshotID: NewSnapshot validates IDs for every source, keeps them
// through canonicalisation, and counts them in equality.
func TestNewSnapshotID(t *testing.T) {
	if _, err := NewSnapshot("s", []Endpoint{{Address: "127.0.0.1:1", ID: "a\nb"}}); err == nil ||
		!strings.Contains(err.Error(), `endpoint 0 (127.0.0.1:1): id "a\nb"`) {
		t.Errorf("control character in an ID: got %v", err)
	}
	a, err := NewSnapshot("s", []Endpoint{{Address: "[::ffff:127.0.0.1]:1", ID: "db-0", Ready: true}})
	if err != nil {
		t.Fatal(err)
	}
	if e := a.Endpoints[0]; e.Address != "127.0.0.1:1" || e.ID != "db-0" {
		t.Errorf("endpoint %+v, want 127.0.0.1:1 with ID db-0", e)
	}
	b, _ := NewSnapshot("s", []Endpoint{{Address: "127.0.0.1:1", ID: "db-1", Ready: true}})
	if a.Equal(b) {
		t.Errorf("snapshots that differ only by an ID are Equal")
	}
}
