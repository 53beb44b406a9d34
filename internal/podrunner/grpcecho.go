package podrunner

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
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
