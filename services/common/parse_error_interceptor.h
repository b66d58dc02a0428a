// Turns "the request could not be parsed" into INVALID_ARGUMENT.
//
// gRPC C++ parses a request before any service code runs; when parsing fails it answers INTERNAL
// with an empty message. The common cause is a client's fault, not the server's: proto3 `string`
// fields must hold valid UTF-8, and a C++ client serializes invalid bytes anyway (only logging
// an error), so a chat with invalid UTF-8 text would reach the client as an opaque INTERNAL.
// This interceptor, installed by RunningServer on every server, notices that the request did not
// parse and rewrites that INTERNAL into an INVALID_ARGUMENT that says so.
#ifndef PIXTRAL_SERVICES_COMMON_PARSE_ERROR_INTERCEPTOR_H_
#define PIXTRAL_SERVICES_COMMON_PARSE_ERROR_INTERCEPTOR_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"

namespace pixtral {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewParseErrorInterceptorFactory();

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_PARSE_ERROR_INTERCEPTOR_H_
