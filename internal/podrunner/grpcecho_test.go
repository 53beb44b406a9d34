package podrunner

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// echoSchema is GRPCEchoSchema, decoding responses by the suite's schema
// independently of how the server encodes them.
func echoSchema(t *testing.T) (req, resp protoreflect.MessageDescriptor) {
	t.Helper()
	return GRPCEchoSchema()
}

// TestGRPCEcho calls the gRPC echo over loopback as the suite's client does
// and decodes the answers by the suite's schema.
func TestGRPCEcho(t *testing.T) {
	reqDesc, respDesc := echoSchema(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewGRPCEcho(Identity{Namespace: "ns", Ingress: "ing", Service: "svc", Pod: "pod-1"}, nil)
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	defer func() { srv.Stop(); <-done }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, method := range []string{"Echo", "EchoTwo"} {
		full := "/" + GRPCEchoService + "/" + method
		resp := dynamicpb.NewMessage(respDesc)
		if err := conn.Invoke(metadataCtx(ctx), full, dynamicpb.NewMessage(reqDesc), resp); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		a := resp.Get(respDesc.Fields().ByName("assertions")).Message()
		ad := a.Descriptor()
		if got := a.Get(ad.Fields().ByName("fully_qualified_method")).String(); got != full {
			t.Errorf("fully_qualified_method %q, want %q", got, full)
		}
		if got := a.Get(ad.Fields().ByName("authority")).String(); got != ln.Addr().String() {
			t.Errorf("authority %q, want %q", got, ln.Addr())
		}
		c := a.Get(ad.Fields().ByName("context")).Message()
		cd := c.Descriptor()
		for field, want := range map[string]string{"namespace": "ns", "ingress": "ing", "service_name": "svc", "pod": "pod-1"} {
			if got := c.Get(cd.Fields().ByName(protoreflect.Name(field))).String(); got != want {
				t.Errorf("context.%s %q, want %q", field, got, want)
			}
		}
		headers := map[string]string{}
		hs := a.Get(ad.Fields().ByName("headers")).List()
		for i := range hs.Len() {
			h := hs.Get(i).Message()
			headers[h.Get(h.Descriptor().Fields().ByName("key")).String()] = h.Get(h.Descriptor().Fields().ByName("value")).String()
		}
		if headers["x-test"] != "yes" || headers[":authority"] != ln.Addr().String() {
			t.Errorf("headers %v: want x-test: yes and :authority", headers)
		}
		if a.Has(ad.Fields().ByName("tls_assertions")) {
			t.Error("tls_assertions over plaintext")
		}
	}
	err = conn.Invoke(ctx, "/"+GRPCEchoService+"/EchoThree", dynamicpb.NewMessage(reqDesc), dynamicpb.NewMessage(respDesc))
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("EchoThree: %v, want Unimplemented", err)
	}
}

func metadataCtx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-test", "yes")
}
