#pragma once
// Test seam: a Client over given stubs (e.g. the generated gmock
// MockJobServiceStub). Pulls in grpc++; include from tests only.

#include <memory>

#include "cli/client.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::cli {

// A Client that sends its calls to the given stubs (either may be null when a
// test does not use that service).
std::unique_ptr<Client> MakeClient(const ClientOptions& options,
                                   std::unique_ptr<v1::JobService::StubInterface> jobs,
                                   std::unique_ptr<v1::AdminService::StubInterface> admin);

}  // namespace kiln::cli
