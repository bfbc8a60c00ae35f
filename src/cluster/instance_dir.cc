#include "cluster/instance_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "common/util.h"
#include "common/write_all.h"

namespace kiln::cluster {
namespace fs = std::filesystem;

Status WriteFileAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return Internal("cannot write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Internal("cannot rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

Status WriteInstanceDir(const std::string& dir, const Launch& l) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Internal("cannot create " + dir + ": " + ec.message());
  std::string text = RenderWorkerConf(l);
  if (!l.join_token.empty()) {
    const std::string file = dir + "/join.token";
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return Internal(Errno("cannot write " + file));
    const bool written = WriteAll(fd, l.join_token + "\n");
    const int err = errno;
    ::close(fd);
    if (!written) {
      errno = err;
      return Internal(Errno("cannot write " + file));
    }
    text += "join_token_file = " + file + "\n";
  }
  return WriteFileAtomic(dir + "/worker.conf", text);
}

}  // namespace kiln::cluster
