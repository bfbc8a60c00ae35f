// What workers send the controller, checked before any store sees it
// (controller/request_checks.h): the messages of the worker stream (a
// registration with its workspaces, job updates, log chunks, workspace
// reports) and StoreCompile's entry, each parsed from protobuf bytes as
// gRPC would; and the workspace names clients and workers give. The first
// input byte picks which. (JobService's ValidateSubmit is not reachable
// here: it is private to controller/job_service.cc.)

#include <google/protobuf/stubs/logging.h>

#include "api/compile_convert.h"
#include "cas/digest.h"
#include "cc/deps.h"
#include "controller/request_checks.h"
#include "controller/workspace_name.h"
#include "fuzz.h"

using namespace kiln;
using kiln::fuzz::Require;

namespace {

void Workspace(const v1::WorkspaceReport& ws) {
  if (!controller::ValidWorkspace(ws)) return;
  Require(CheckName("project", ws.project()).ok() && !ws.name().empty() &&
              controller::CheckWorkspaceName(ws.name()).ok() && ws.bytes() >= 0,
          "ValidWorkspace accepted a bad report");
}

void WorkerMessage(std::string_view bytes) {
  v1::WorkerMessage m;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
  if (m.has_register_()) {
    const auto& r = m.register_();
    Status s = controller::ValidateRegister(r);
    if (s.ok()) {
      Require(!r.worker_id().empty() && r.worker_id().size() <= 128 && !HasControl(r.worker_id()) &&
                  !HasControl(r.hostname()) && !r.arch().empty() && !HasControl(r.arch()) && !HasControl(r.os()) &&
                  CheckName("cluster", r.cluster()).ok() && r.labels_size() <= 64,
              "ValidateRegister accepted a bad registration");
      for (const auto& [k, v] : r.labels()) Require(!k.empty() && !HasControl(k) && !HasControl(v), "a bad label");
    } else {
      fuzz::RequireClearError(s, "ValidateRegister");
    }
    for (const auto& ws : r.workspaces()) Workspace(ws);
  } else if (m.has_update()) {
    Status s = controller::ValidateUpdate(m.update());
    if (s.ok()) {
      Require(m.update().status() != v1::SETUP && m.update().status() != v1::LOST, "ValidateUpdate took SETUP/LOST");
      if (m.update().has_result())
        Require(m.update().result().error().find('\0') == std::string::npos, "a NUL in a result's error");
    } else {
      fuzz::RequireClearError(s, "ValidateUpdate");
    }
    const v1::JobUpdate& u = m.update();
    Status t = controller::ValidateTimings(u);
    if (t.ok() && u.has_timings()) {
      // What the history stores: bytes within bounds, phases in order.
      const auto& p = u.timings();
      Require(p.input_bytes() >= 0 && p.output_bytes() >= 0 && u.log_size() >= 0, "negative bytes in timings");
      int64_t last = 0;
      for (int64_t ms : {p.received_ms(), p.inputs_ms(), p.image_ms(), u.started_at_ms(), p.ended_ms(),
                         u.finished_at_ms()}) {
        Require(ms >= 0, "a negative phase time");
        if (ms == 0) continue;
        Require(ms >= last, "timings out of order");
        last = ms;
      }
    } else if (!t.ok()) {
      fuzz::RequireClearError(t, "ValidateTimings");
    }
  } else if (m.has_log()) {
    Status s = controller::ValidateLogChunk(m.log());
    if (s.ok()) Require(m.log().offset() >= 0 && m.log().data().size() <= (4u << 20), "a bad log chunk");
    else fuzz::RequireClearError(s, "ValidateLogChunk");
  } else if (m.has_workspace()) {
    Workspace(m.workspace());
  }
}

void StoreCompile(std::string_view bytes) {
  v1::StoreCompileRequest req;
  if (!req.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
  fuzz::RequireOkOrClear(controller::CheckJobRef(req.job_id(), req.attempt()), "CheckJobRef");
  cc::CompileEntry e = api::FromProto(req);
  Status s = controller::CheckStoreCompile(e);
  if (s.ok()) {
    Require(cas::IsHash(e.key) && cas::IsHash(e.result.key), "CheckStoreCompile accepted a bad key");
    Require(e.manifest_only || cas::CheckDigest(e.result.object, "object").ok(), "a bad object digest");
    Require(cc::CheckManifestEntries(e.deps).ok(), "a bad manifest");
  } else {
    fuzz::RequireClearError(s, "CheckStoreCompile");
  }
}

void Names(std::string_view bytes) {
  const std::string n(bytes);
  Status s = controller::CheckWorkspaceName(n);
  if (s.ok()) {
    Require(n.size() <= 128 && !HasControl(n) && n.find("..") == std::string::npos &&
                (n.empty() || (n[0] != '/' && n[0] != '.')),
            "CheckWorkspaceName accepted a bad name");
  } else {
    fuzz::RequireClearError(s, "CheckWorkspaceName");
  }
  fuzz::RequireOkOrClear(controller::CheckCompileText(n, controller::kMaxCompilePath, "path"), "CheckCompileText");
  fuzz::RequireOkOrClear(controller::CheckCompileKey(n, "key"), "CheckCompileKey");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protobuf logs every string field that is not UTF-8; the parse fails anyway.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: WorkerMessage(rest); break;
    case 1: StoreCompile(rest); break;
    default: Names(rest);
  }
  return 0;
}
