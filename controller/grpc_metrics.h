#pragma once
// Counts every gRPC call the controller serves, by method and status code
// (kiln_grpc_calls_total): a server interceptor, so that no handler has to.

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "controller/metrics.h"

namespace kiln::controller {

// For grpc::ServerBuilder::experimental().SetInterceptorCreators. A method
// that is not one of the compiled-in services' (a probe for made-up names)
// is counted as method="unknown": labels stay bounded.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> CallCounter(const GrpcMetrics& m);

}  // namespace kiln::controller
