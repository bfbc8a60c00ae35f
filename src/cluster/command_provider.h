#pragma once
// The `command` provider: an operator's executable does the work, so kiln
// drives a cloud (or anything else) without knowing it. Called as
// `COMMAND list|create|drain|destroy` with one JSON document on stdin; list
// answers JSON on stdout; exit status 0 is success, anything else a failure
// whose stderr is the message. The protocol is in docs/operations.md
// ("Providers"); deploy/provider-example.sh implements it with local
// kiln-worker processes. The command's answers are untrusted: checked,
// bounded, and a bad one changes nothing.

#include <chrono>
#include <string>
#include <vector>

#include "cluster/provider.h"
#include "common/status.h"

namespace kiln::cluster {

class CommandProvider : public Provider {
 public:
  struct Options {
    std::string command;                              // absolute path
    std::string cluster;                              // passed to every call
    std::string provider_settings = "{}";             // the cluster's, a JSON object, passed to every call
    std::string work_dir_base = "/var/lib/kiln-worker";  // WorkDir(id) = <base>/<id>
    std::chrono::seconds timeout{60};                 // per call, then SIGKILL
  };
  explicit CommandProvider(Options o);

  // `COMMAND list`: its {"instances": [{"id": ..., "alive": ...}]}.
  // Unavailable when it fails or times out, or answers something else
  // (malformed JSON, an id that is not a name, more than 10,000 instances).
  Result<std::vector<Seen>> List() override;
  // `COMMAND create` with the instance, its worker settings, worker.conf
  // lines, the CA certificate's contents and the join token. Unavailable
  // with its stderr when it fails; InvalidArgument for a bad id, Internal
  // when the CA file cannot be read.
  Status Create(const Launch& l) override;
  // `COMMAND drain`; its exit status 3 means no such instance (NotFound).
  Status Drain(const std::string& id) override;
  // `COMMAND destroy`; an instance that is gone (exit status 0 or 3) is OK.
  Status Destroy(const std::string& id) override;
  std::string WorkDir(const std::string& id) const override { return o_.work_dir_base + "/" + id; }

  // Bounds on what the command may answer.
  static constexpr size_t kMaxOutput = 1 << 20;
  static constexpr size_t kMaxInstances = 10'000;

 private:
  // Runs `COMMAND op` with `input` (JSON) on stdin; its stdout, or an
  // error naming the command and its stderr: NotFound for exit status 3
  // ("no such instance"), Unavailable for any other failure.
  Result<std::string> Call(const std::string& op, const std::string& input);
  Options o_;
};

}  // namespace kiln::cluster
