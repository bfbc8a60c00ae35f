#include "common/mounts.h"

#include <spdlog/spdlog.h>
#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace kiln {
namespace {

namespace fs = std::filesystem;

// Mount points in /proc/self/mountinfo (octal escapes decoded).
std::vector<std::string> MountPoints() {
  std::ifstream in("/proc/self/mountinfo");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    if (!(f >> id >> parent >> dev >> root >> point)) continue;
    std::string p;
    for (size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        p += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        p += point[i];
      }
    }
    out.push_back(p);
  }
  return out;
}

}  // namespace

// Unmounts `path`: waits a little for a busy one (a container's last
// process exiting), then detaches it. True if it is really gone.
bool UnmountPath(const std::string& path) {
  for (int i = 0; i < 20; ++i) {
    if (::umount2(path.c_str(), 0) == 0 || errno == EINVAL || errno == ENOENT) return true;
    if (errno != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  spdlog::warn("cannot unmount {}: {}; detaching it", path, std::strerror(errno));
  ::umount2(path.c_str(), MNT_DETACH);
  return false;
}

void UnmountUnder(const std::string& dir) {
  std::error_code ec;
  std::string root = fs::weakly_canonical(dir, ec).string();
  if (root.empty()) return;
  std::vector<std::string> under;
  for (const auto& p : MountPoints())
    if (p.size() > root.size() && p.compare(0, root.size(), root) == 0 && p[root.size()] == '/') under.push_back(p);
  // Deepest first: an overlay before the disk below it.
  std::sort(under.begin(), under.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& p : under) {
    spdlog::info("unmounting {}: left mounted when the worker stopped", p);
    UnmountPath(p);
  }
}

}  // namespace kiln
