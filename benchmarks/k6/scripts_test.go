package k6

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/evanw/esbuild/pkg/api"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/longhaul-proxy/longhaul/config"
)

// scripts are the k6 scripts, each with the names it must export: options
// and the functions its scenarios exec (default when they name none).
var scripts = map[string][]string{
	"websocket.js": {"default", "options"},
	"grpc.js":      {"options", "streams", "unary"},
}

// TestScriptsParse: every .js file of the folder parses as an ES module
// (k6 runs ES modules), with no error or warning from esbuild's parser.
func TestScriptsParse(t *testing.T) {
	files, err := filepath.Glob("*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		if _, ok := scripts[f]; !ok && f != "lib.js" {
			t.Errorf("%s is not listed in the test's scripts", f)
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res := api.Transform(string(src), api.TransformOptions{
			Loader:     api.LoaderJS,
			Format:     api.FormatESModule,
			Sourcefile: f,
			Target:     api.ES2020,
			LogLevel:   api.LogLevelSilent,
		})
		for _, m := range append(res.Errors, res.Warnings...) {
			t.Errorf("%s: %s", f, formatMessage(m))
		}
	}
}

// TestScriptsBundle: each script bundles as k6 would load it (its relative
// imports resolve and export the names it imports; k6's own modules are
// left external) and exports what k6 runs: options, and default or the
// functions its scenarios name in exec.
func TestScriptsBundle(t *testing.T) {
	for f, want := range scripts {
		res := api.Build(api.BuildOptions{
			EntryPoints: []string{f},
			Bundle:      true,
			Write:       false,
			Outdir:      t.TempDir(),
			Format:      api.FormatESModule,
			Target:      api.ES2020,
			Platform:    api.PlatformNeutral,
			External:    []string{"k6", "k6/*"},
			Metafile:    true,
			LogLevel:    api.LogLevelSilent,
		})
		for _, m := range append(res.Errors, res.Warnings...) {
			t.Errorf("%s: %s", f, formatMessage(m))
		}
		if len(res.Errors) > 0 {
			continue
		}
		var meta struct {
			Inputs  map[string]struct{ Imports []struct{ Path, Kind string } }
			Outputs map[string]struct{ Exports []string }
		}
		if err := json.Unmarshal([]byte(res.Metafile), &meta); err != nil {
			t.Fatalf("%s: metafile: %v", f, err)
		}
		for _, out := range meta.Outputs {
			got := slices.Sorted(slices.Values(out.Exports))
			if !slices.Equal(got, want) {
				t.Errorf("%s exports %v, want %v", f, got, want)
			}
		}
		// Only k6's own modules are imported from outside the folder.
		for _, in := range meta.Inputs {
			for _, imp := range in.Imports {
				if !strings.HasPrefix(imp.Path, "k6") && imp.Path != "lib.js" {
					t.Errorf("%s imports %q", f, imp.Path)
				}
				if strings.HasPrefix(imp.Path, "k6") && !k6Modules[imp.Path] {
					t.Errorf("%s imports %q, not a k6 module the README's k6 version has", f, imp.Path)
				}
			}
		}
		// The scenarios' exec names are functions the script exports.
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`exec:\s*'([A-Za-z_]\w*)'`).FindAllStringSubmatch(string(src), -1) {
			if !slices.Contains(want, m[1]) {
				t.Errorf("%s: a scenario execs %s, which it does not export", f, m[1])
			}
		}
	}
}

// k6Modules are the built-in modules the scripts may import.
var k6Modules = map[string]bool{"k6": true, "k6/ws": true, "k6/net/grpc": true, "k6/metrics": true}

// TestHealthProto: what proto/health.proto declares of
// grpc.health.v1.Health is declared so in grpc-go's (methods, streaming,
// messages, fields and numbers), Check and Watch among it, and grpc.js
// calls only methods it declares.
func TestHealthProto(t *testing.T) {
	src, err := os.ReadFile("proto/health.proto")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseOutline(string(src))
	if err != nil {
		t.Fatalf("proto/health.proto: %v", err)
	}
	// A subset of grpc-go's: what it declares is declared there the same
	// way (grpc-go's has methods the scripts do not call).
	full := outlineOf(healthpb.File_grpc_health_v1_health_proto)
	if got.Package != full.Package {
		t.Errorf("package %s, grpc-go's %s", got.Package, full.Package)
	}
	for _, m := range got.Methods {
		if !slices.Contains(full.Methods, m) {
			t.Errorf("proto/health.proto declares %s; grpc-go's methods: %v", m, full.Methods)
		}
	}
	for _, f := range got.Fields {
		if !slices.Contains(full.Fields, f) {
			t.Errorf("proto/health.proto declares %s; grpc-go's fields: %v", f, full.Fields)
		}
	}
	for _, m := range []string{"Health/Check", "Health/Watch"} {
		if !got.hasMethod(m) {
			t.Errorf("proto/health.proto does not declare %s", m)
		}
	}
	js, err := os.ReadFile("grpc.js")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `client.load(['proto'], 'health.proto')`) {
		t.Error("grpc.js does not load proto/health.proto")
	}
	for _, m := range regexp.MustCompile(`'(grpc\.health\.v1\.Health/\w+)'`).FindAllStringSubmatch(string(js), -1) {
		if !got.hasMethod(strings.TrimPrefix(m[1], got.Package+".")) {
			t.Errorf("grpc.js calls %s, which proto/health.proto does not declare", m[1])
		}
	}
}

// TestREADME: the folder's README names every script and the .proto.
func TestREADME(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for f := range scripts {
		if !strings.Contains(string(b), "`"+f+"`") {
			t.Errorf("README.md does not document %s", f)
		}
	}
	if !strings.Contains(string(b), "proto/health.proto") {
		t.Error("README.md does not name proto/health.proto")
	}
	// Its example listeners are a configuration longhaul accepts.
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no yaml block")
	}
	c, err := config.Parse([]byte(block))
	if err != nil {
		t.Fatalf("README.md's listeners: %v", err)
	}
	for _, l := range c.Listeners {
		if l.Protocol != map[string]string{"ws": "http", "grpc": "grpc"}[l.Name] {
			t.Errorf("README.md's listener %s is of protocol %s", l.Name, l.Protocol)
		}
	}
}

func formatMessage(m api.Message) string {
	if m.Location == nil {
		return m.Text
	}
	return fmt.Sprintf("%s:%d: %s\n\t%s", m.Location.File, m.Location.Line, m.Text, m.Location.LineText)
}

// outlineOf returns the outline of a compiled proto file.
func outlineOf(fd protoreflect.FileDescriptor) outline {
	o := outline{Package: string(fd.Package())}
	msgs := fd.Messages()
	for i := range msgs.Len() {
		addMessage(&o, msgs.Get(i))
	}
	svcs := fd.Services()
	for i := range svcs.Len() {
		s := svcs.Get(i)
		ms := s.Methods()
		for j := range ms.Len() {
			m := ms.Get(j)
			o.Methods = append(o.Methods, methodName(string(s.Name()), string(m.Name()), string(m.Input().Name()), string(m.Output().Name()), m.IsStreamingClient(), m.IsStreamingServer()))
		}
	}
	o.sort()
	return o
}

func addMessage(o *outline, m protoreflect.MessageDescriptor) {
	fs := m.Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		o.Fields = append(o.Fields, fieldName(string(m.Name()), string(f.Name()), int(f.Number())))
	}
	es := m.Enums()
	for i := range es.Len() {
		vs := es.Get(i).Values()
		for j := range vs.Len() {
			v := vs.Get(j)
			o.Fields = append(o.Fields, fieldName(string(es.Get(i).Name()), string(v.Name()), int(v.Number())))
		}
	}
}
