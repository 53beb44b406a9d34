package podrunner

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// GRPCEchoService is the full name of the conformance suite's gRPC echo
// service. Its methods Echo and EchoTwo take an empty EchoRequest and answer
// an EchoResponse; EchoThree, like any other method, is unimplemented.
const GRPCEchoService = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho"

// NewGRPCEcho returns a gRPC server that answers as the suite's gRPC echo
// backend does (a container with GRPC_ECHO_SERVER set): each EchoResponse
// carries the fully qualified method, every request metadata entry
// (pseudo-headers such as :authority included), the :authority, the
// identity (namespace, ingress, service_name, pod) and, with tlsConfig,
// the TLS state. Messages are encoded by hand with protowire in the
// suite's schema (grpcecho.proto), so no generated code is needed.
func NewGRPCEcho(id Identity, tlsConfig *tls.Config) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			return grpcEcho(id, tlsConfig != nil, stream)
		}),
	}
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	return grpc.NewServer(opts...)
}

func grpcEcho(id Identity, overTLS bool, stream grpc.ServerStream) error {
	full, _ := grpc.MethodFromServerStream(stream)
	svc, method, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if svc != GRPCEchoService || (method != "Echo" && method != "EchoTwo") {
		return status.Errorf(codes.Unimplemented, "method %s not implemented", method)
	}
	var in []byte
	if err := stream.RecvMsg(&in); err != nil {
		return err
	}
	resp, err := echoResponse(stream.Context(), id, full, overTLS)
	if err != nil {
		return err
	}
	return stream.SendMsg(resp)
}

// echoResponse encodes EchoResponse{assertions: Assertions{...}}.
func echoResponse(ctx context.Context, id Identity, method string, overTLS bool) ([]byte, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no metadata in the request")
	}
	var a []byte
	a = appendString(a, 1, method) // fully_qualified_method
	authority := ""
	for k, vs := range md {
		for _, v := range vs {
			if k == ":authority" {
				authority = v
			}
			var h []byte
			h = appendString(h, 1, k)
			h = appendString(h, 2, v)
			a = appendMessage(a, 2, h) // headers
		}
	}
	a = appendString(a, 3, authority)
	var c []byte
	c = appendString(c, 1, id.Namespace)
	c = appendString(c, 2, id.Ingress)
	c = appendString(c, 3, id.Service)
	c = appendString(c, 4, id.Pod)
	a = appendMessage(a, 4, c) // context
	if overTLS {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return nil, status.Error(codes.Internal, "no peer in the request")
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok {
			return nil, status.Error(codes.Internal, "no TLS state in the request")
		}
		s := tlsState(&info.State)
		var t []byte
		t = appendString(t, 1, s.Version)
		t = appendString(t, 2, s.NegotiatedProtocol)
		t = appendString(t, 3, s.ServerName)
		t = appendString(t, 4, s.CipherSuite)
		for _, pc := range s.PeerCertificates {
			t = appendString(t, 5, pc)
		}
		a = appendMessage(a, 5, t) // tls_assertions
	}
	var resp []byte
	resp = appendMessage(resp, 1, a) // assertions
	resp = appendMessage(resp, 2, nil)
	return resp, nil
}

// appendString appends field num as a proto3 string (omitted when empty).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendMessage appends field num as an embedded message.
func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// rawCodec passes messages through as bytes: requests are read into a
// *[]byte, responses sent as []byte.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*p = append((*p)[:0], data...)
	return nil
}

// GRPCEchoSchema returns the messages EchoRequest and EchoResponse of the
// suite's grpcecho.proto, written out as a descriptor, so that clients
// (with dynamicpb) decode the echo's answers by the suite's schema,
// independently of how the server encodes them.
var GRPCEchoSchema = sync.OnceValues(func() (req, resp protoreflect.MessageDescriptor) {
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
		panic("podrunner: the gRPC echo's schema does not build: " + err.Error())
	}
	return f.Messages().ByName("EchoRequest"), f.Messages().ByName("EchoResponse")
})

// GRPCEchoIdentity returns the context of an EchoResponse decoded by
// GRPCEchoSchema: the namespace, service and pod that answered.
func GRPCEchoIdentity(resp protoreflect.Message) (namespace, service, pod string) {
	a := resp.Get(resp.Descriptor().Fields().ByName("assertions")).Message()
	c := a.Get(a.Descriptor().Fields().ByName("context")).Message()
	f := c.Descriptor().Fields()
	return c.Get(f.ByName("namespace")).String(), c.Get(f.ByName("service_name")).String(), c.Get(f.ByName("pod")).String()
}
