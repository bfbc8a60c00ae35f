#pragma once
// The compile cache's setup on a worker: kiln-cc's own copy in the work
// directory, per image a directory of it with links named after the image's
// C and C++ compilers (bound at /kiln/bin, first on PATH), the memories its
// jobs share, and sending what kiln-cc reported in a job's run.

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "common/status.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "worker/compile_cache.h"

namespace kiln::worker {

// cc, c++, and gcc or g++ with the optional triplet prefix and version
// suffix (x86_64-linux-gnu-gcc-12): the names kiln-cc stands in for.
bool IsCompilerName(std::string_view n);

// The compiler names (IsCompilerName) in the image's usr/local/bin, usr/bin
// and bin, sorted. A directory that is a link is skipped: the image's links
// are never followed out of it.
std::set<std::string> CompilersIn(const std::string& rootfs);

class CompileCacheSetup {
 public:
  // Copies kiln-cc from `src` (empty: beside this executable) into
  // work_dir/kiln-cc, replacing what is there: a reinstall does not change
  // the wrapper under running builds. Null (after a warning) if it cannot:
  // the compile cache is off on this worker. memory_bytes > 0: a lookup
  // memory of that size.
  static std::unique_ptr<CompileCacheSetup> Install(const std::string& work_dir, std::string src,
                                                    int64_t memory_bytes);
  // Uses `master` (kiln-cc's copy) as it is.
  CompileCacheSetup(std::string work_dir, std::string master, int64_t memory_bytes);

  // work_dir/kiln-cc/<image hex>: kiln-cc and a link to it for each compiler
  // the image has (only those: a build probing for a compiler must not find
  // one that is not there). Made once per image and worker run;
  // FailedPrecondition if it cannot be made.
  Result<std::string> WrapperDir(const std::string& image, const std::string& rootfs);

  const std::string& master() const { return master_; }
  LookupMemory* memory() { return memory_.get(); }  // null: none
  IdentityMemory* identities() { return &identities_; }

 private:
  const std::string work_dir_;
  const std::string master_;
  std::unique_ptr<LookupMemory> memory_;
  IdentityMemory identities_;
  std::mutex mu_;
  std::set<std::string> ready_;  // image hashes whose wrapper directory exists
};

// Sends what kiln-cc reported in a job's run (best effort: statistics;
// UNAVAILABLE is tried three times, a failure is logged). Nothing to send
// when no unit was compiled.
void RecordCompiles(v1::WorkerService::StubInterface& stub, const v1::RecordCompilesRequest& r);

}  // namespace kiln::worker
