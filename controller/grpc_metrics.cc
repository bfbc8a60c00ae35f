#include "controller/grpc_metrics.h"

#include <google/protobuf/descriptor.h>

#include <string>

#include "common/status.h"

namespace kiln::controller {
namespace {

namespace ex = grpc::experimental;

// "/kiln.v1.JobService/Submit" if that method is compiled in, else "unknown".
std::string KnownMethod(const char* path) {
  if (path == nullptr) return "unknown";
  std::string m(path);
  // gRPC's own health service has no generated descriptor here.
  if (m == "/grpc.health.v1.Health/Check" || m == "/grpc.health.v1.Health/Watch") return m;
  if (m.size() < 4 || m[0] != '/' || m.size() > 200) return "unknown";
  std::string full = m.substr(1);
  auto slash = full.find('/');
  if (slash == std::string::npos) return "unknown";
  full[slash] = '.';
  return google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(full) != nullptr ? m : "unknown";
}

class Counting : public ex::Interceptor {
 public:
  Counting(ex::ServerRpcInfo* info, const GrpcMetrics& m) : method_(KnownMethod(info->method())), m_(m) {}

  void Intercept(ex::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(ex::InterceptionHookPoints::PRE_SEND_STATUS)) {
      m_.calls.With({{"method", method_}, {"code", CodeName(static_cast<Code>(methods->GetSendStatus().error_code()))}}).Inc();
    }
    methods->Proceed();
  }

 private:
  std::string method_;
  const GrpcMetrics& m_;
};

class Factory : public ex::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(const GrpcMetrics& m) : m_(m) {}
  ex::Interceptor* CreateServerInterceptor(ex::ServerRpcInfo* info) override { return new Counting(info, m_); }

 private:
  const GrpcMetrics& m_;
};

}  // namespace

std::unique_ptr<ex::ServerInterceptorFactoryInterface> CallCounter(const GrpcMetrics& m) {
  return std::make_unique<Factory>(m);
}

}  // namespace kiln::controller
