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
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// echoSchema is the suite's grpcecho.proto (messages only), written out as
// a descriptor so that the test decodes responses with the protobuf
// library by that schema, independently of how the server encodes them.
func echoSchema(t *testing.T) (req, resp protoreflect.MessageDescriptor) {
	t.Helper()
	str := func(name string, num int32) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num),
			Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()}
	}
	msg := func(name string, num int32, typ string, repeated bool) *descriptorpb.FieldDescriptorProto {
		l := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		if repeated {
			l = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		}
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num),
			Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: proto.String(".gateway_api_conformance.echo_basic.grpcecho." + typ), Label: l.Enum()}
	}
	rep := func(f *descriptorpb.FieldDescriptorProto) *descriptorpb.FieldDescriptorProto {
		f.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		return f
	}
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("grpcecho.proto"),
		Package: proto.String("gateway_api_conformance.echo_basic.grpcecho"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Header"), Field: []*descriptorpb.FieldDescriptorProto{str("key", 1), str("value", 2)}},
			{Name: proto.String("Context"), Field: []*descriptorpb.FieldDescriptorProto{str("namespace", 1), str("ingress", 2), str("service_name", 3), str("pod", 4)}},
			{Name: proto.String("TLSAssertions"), Field: []*descriptorpb.FieldDescriptorProto{str("version", 1), str("negotiated_protocol", 2), str("server_name", 3), str("cipher_suite", 4), rep(str("peer_certificates", 5))}},
			{Name: proto.String("Assertions"), Field: []*descriptorpb.FieldDescriptorProto{
				str("fully_qualified_method", 1), msg("headers", 2, "Header", true), str("authority", 3),
				msg("context", 4, "Context", false), msg("tls_assertions", 5, "TLSAssertions", false)}},
			{Name: proto.String("EchoRequest")},
			{Name: proto.String("EchoResponse"), Field: []*descriptorpb.FieldDescriptorProto{msg("assertions", 1, "Assertions", false), msg("request", 2, "EchoRequest", false)}},
		},
	}
	f, err := protodesc.NewFile(fd, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f.Messages().ByName("EchoRequest"), f.Messages().ByName("EchoResponse")
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
