// Image layers and image archives as the worker and `kiln image import`
// unpack them: cas::Unpack (libarchive's tar reader and decompressors, then
// our path and link rules) onto a destination that already holds a lower
// layer, with symlinks pointing out of it. Whatever the bytes, nothing
// outside the destination changes and no device, fifo or set-id file is
// made.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "cas/unpack.h"
#include "fuzz.h"

using namespace kiln;
using kiln::fuzz::Require;
namespace fs = std::filesystem;

namespace {

std::string base;  // <tmp>/kiln-fuzz-unpack-XXXXXX: dest/ and outside/

void RemoveBase() {
  std::error_code ec;
  if (!base.empty()) fs::remove_all(base, ec);
}

std::string Slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A lower layer: a directory, a file, and links that point out of dest/.
void Prepare() {
  std::error_code ec;
  fs::remove_all(base + "/dest", ec);
  Require(fs::create_directories(base + "/dest/etc"), "cannot create dest");
  std::ofstream(base + "/dest/etc/passwd") << "root:x:0:0::/root:/bin/sh\n";
  fs::create_symlink("../outside", base + "/dest/lnk");
  fs::create_symlink(base + "/outside", base + "/dest/abs");
}

// Nothing outside dest/ changed: the base holds dest/ and outside/, and
// outside/ its one file, unchanged and not linked from anywhere.
void CheckOutside() {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(base)) names.insert(e.path().filename().string());
  Require(names == std::set<std::string>{"dest", "outside"}, "an entry changed the destination's parent");
  names.clear();
  for (const auto& e : fs::directory_iterator(base + "/outside")) names.insert(e.path().filename().string());
  Require(names == std::set<std::string>{"keep"}, "an entry wrote into a directory outside the destination");
  struct stat st {};
  Require(::lstat((base + "/outside/keep").c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
              Slurp(base + "/outside/keep") == "sentinel",
          "an entry changed or linked a file outside the destination");
}

void CheckDest() {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(base + "/dest", fs::directory_options::none, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    Require(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode),
            "the archive made a device node, fifo or socket");
    Require((st.st_mode & (S_ISUID | S_ISGID)) == 0, "the archive made a set-id file");
  }
}

// Tar headers carry a checksum that almost every mutation breaks, and
// libarchive then reads no further: each block that looks like a ustar
// header gets its checksum set again, so mutated names and types reach
// our code.
void FixTarChecksums(uint8_t* data, size_t size) {
  for (size_t off = 0; off + 512 <= size; off += 512) {
    uint8_t* h = data + off;
    if (std::memcmp(h + 257, "ustar", 5) != 0) continue;
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < 512; ++i) sum += h[i];
    std::snprintf(reinterpret_cast<char*>(h + 148), 8, "%06o", sum & 0777777);
    h[155] = ' ';
  }
}

}  // namespace

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int /*seed*/) {
  size = LLVMFuzzerMutate(data, size, max_size);
  FixTarChecksums(data, size);
  return size;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/kiln-fuzz-unpack-XXXXXX";
  Require(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
  base = tmpl;
  std::atexit(RemoveBase);
  fs::create_directory(base + "/outside");
  std::ofstream(base + "/outside/keep") << "sentinel";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Prepare();
  int fd = ::memfd_create("layer", MFD_CLOEXEC);
  Require(fd >= 0, "memfd_create failed");
  for (size_t off = 0; off < size;) {
    ssize_t n = ::write(fd, data + off, size - off);
    Require(n > 0, "writing the memfd failed");
    off += static_cast<size_t>(n);
  }
  cas::UnpackOptions o;
  o.max_bytes = 8 << 20;
  auto st = cas::Unpack("/proc/self/fd/" + std::to_string(fd), base + "/dest", o);
  ::close(fd);
  if (!st.ok()) fuzz::RequireClearError(st.status(), "Unpack");
  CheckOutside();
  CheckDest();
  return 0;
}
