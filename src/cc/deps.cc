#include "cc/deps.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "cas/digest.h"
#include "cc/code.h"

namespace kiln::cc {
namespace {

int64_t Ns(const struct timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

// The quoted file name of a line marker, unescaped (GCC escapes '"' and '\'
// with a backslash and other bytes as octal).
std::optional<std::string> QuotedName(std::string_view s) {
  if (s.empty() || s[0] != '"') return std::nullopt;
  std::string out;
  for (size_t i = 1; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') return out;
    if (c == '\\' && i + 1 < s.size()) {
      char n = s[++i];
      if (n >= '0' && n <= '7') {
        int v = 0, digits = 0;
        while (digits < 3 && i < s.size() && s[i] >= '0' && s[i] <= '7') {
          v = v * 8 + (s[i] - '0');
          ++i;
          ++digits;
        }
        --i;
        out += static_cast<char>(v);
      } else {
        out += n;
      }
    } else {
      out += c;
    }
  }
  return std::nullopt;
}

}  // namespace

void LineMarkerScanner::Feed(std::string_view chunk) {
  size_t pos = 0;
  while (pos < chunk.size()) {
    size_t nl = chunk.find('\n', pos);
    std::string_view piece = chunk.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (!in_line_) {
      if (partial_.empty() && !piece.empty() && piece[0] != '#') {
        in_line_ = true;  // not a marker: skip to the end of the line without copying
      } else {
        partial_.append(piece);
        if (partial_.size() > 8192) {  // no marker is this long
          partial_.clear();
          in_line_ = true;
        }
      }
    }
    if (nl == std::string_view::npos) break;
    if (!in_line_ && !partial_.empty()) Line(partial_);
    partial_.clear();
    in_line_ = false;
    pos = nl + 1;
  }
}

void LineMarkerScanner::Line(std::string_view line) {
  // "# 12 "file" 1 3" (or "#line 12 "file"").
  size_t i = 1;
  if (line.substr(0, 5) == "#line") i = 5;
  while (i < line.size() && line[i] == ' ') ++i;
  size_t digits = i;
  while (i < line.size() && line[i] >= '0' && line[i] <= '9') ++i;
  if (i == digits || i >= line.size() || line[i] != ' ') return;
  auto name = QuotedName(line.substr(i + 1));
  if (!name || name->empty() || (*name)[0] == '<') return;  // <built-in>, <command-line>
  // With -g, the working directory as "DIR//" (-fworking-directory): in the key already.
  if (name->size() >= 2 && name->compare(name->size() - 2, 2, "//") == 0) return;
  if (seen_.insert(*name).second) files_.push_back(*name);
}

IncludeTrace SplitIncludeTrace(std::string_view err, const std::function<bool(const std::string&)>& exists) {
  IncludeTrace t;
  std::set<std::string> seen;
  bool in_guards = false;
  size_t pos = 0;
  while (pos < err.size()) {
    size_t nl = err.find('\n', pos);
    size_t end = nl == std::string_view::npos ? err.size() : nl + 1;
    std::string_view whole = err.substr(pos, end - pos);
    std::string_view line = whole.substr(0, nl == std::string_view::npos ? whole.size() : whole.size() - 1);
    pos = end;
    if (in_guards) {
      if (!line.empty() && exists(std::string(line))) continue;
      in_guards = false;
    }
    if (line == "Multiple include guards may be useful for:") {
      in_guards = true;
      continue;
    }
    size_t dots = 0;
    while (dots < line.size() && line[dots] == '.') ++dots;
    if (dots > 0 && dots + 1 < line.size() && line[dots] == ' ') {
      std::string name(line.substr(dots + 1));
      if (exists(name)) {
        if (seen.insert(name).second) t.files.push_back(std::move(name));
        continue;
      }
      t.complete = false;
    }
    t.rest.append(whole);
  }
  return t;
}

std::string AbsolutePath(std::string_view path, std::string_view cwd, std::vector<std::string>* stepped_out) {
  std::string joined = !path.empty() && path[0] == '/' ? std::string(path) : std::string(cwd) + "/" + std::string(path);
  std::vector<std::string_view> parts;
  std::string_view rest = joined;
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) {
        if (stepped_out != nullptr) {
          std::string dir;
          for (auto p : parts) (dir += '/') += p;
          stepped_out->push_back(dir);
        }
        parts.pop_back();
      }
      continue;  // "/.." is "/"
    }
    parts.push_back(part);
  }
  std::string out;
  for (auto p : parts) (out += '/') += p;
  return out.empty() ? "/" : out;
}

Result<std::string> ReadFileUpTo(const std::string& path, size_t max) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("cannot read " + path + ": " + strerror(errno));
  std::string out;
  char buf[64 * 1024];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max) {
      ::close(fd);
      return ResourceExhausted(path + " is larger than " + std::to_string(max) + " bytes");
    }
  }
  ::close(fd);
  if (n < 0) return Unavailable("cannot read " + path + ": " + strerror(errno));
  return out;
}

bool Under(std::string_view path, const std::vector<std::string>& roots) {
  for (const auto& r : roots) {
    if (r == "/") return true;
    if (path.size() >= r.size() && path.substr(0, r.size()) == r && (path.size() == r.size() || path[r.size()] == '/'))
      return true;
  }
  return false;
}

Result<std::string> FileHashes::Get(const std::string& path, int64_t changed_since_ns, bool reread, bool code) {
  if (changed_since_ns == 0 && !reread && !(code && !code_.count(path))) {
    auto it = memo_.find(path);
    if (it != memo_.end()) return it->second;
  }
  code_.erase(path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && errno != ENOTDIR) return FailedPrecondition("cannot read " + path + ": " + strerror(errno));
    return memo_[path] = "missing";
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return FailedPrecondition("cannot stat " + path + ": " + strerror(errno));
  if (S_ISDIR(st.st_mode)) return memo_[path] = "a directory";
  if (changed_since_ns != 0 && (Ns(st.st_mtim) >= changed_since_ns || Ns(st.st_ctim) >= changed_since_ns))
    return FailedPrecondition(path + " changed during the compile");
  cas::Hasher h;
  // Each chunk is searched with the end of the one before it in front (a
  // macro name may straddle two): buf holds kCarry bytes of it, then the chunk.
  static constexpr std::string_view kMacros[] = {"__DATE__", "__TIME__", "__TIMESTAMP__"};
  static constexpr size_t kCarry = 12;  // the longest name but one byte
  char buf[kCarry + 64 * 1024];
  size_t carried = 0;
  bool time_macros = false;
  std::string text;  // with `code`: the whole file (headers are small; a huge one is named by its bytes)
  constexpr size_t kMaxCodeText = 16 << 20;
  while (true) {
    ssize_t n = ::read(fd, buf + kCarry, sizeof buf - kCarry);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailedPrecondition("cannot read " + path + ": " + strerror(errno));
    if (n == 0) break;
    h.Update(buf + kCarry, static_cast<size_t>(n));
    if (code && text.size() <= kMaxCodeText) text.append(buf + kCarry, static_cast<size_t>(n));
    if (!time_macros) {
      const char* from = buf + kCarry - carried;
      const size_t len = carried + static_cast<size_t>(n);
      for (std::string_view m : kMacros)
        time_macros = time_macros || ::memmem(from, len, m.data(), m.size()) != nullptr;
      carried = std::min(kCarry, len);
      memmove(buf + kCarry - carried, from + len - carried, carried);
    }
  }
  if (time_macros) time_macros_.insert(path);
  std::string bytes = "f:" + h.Finish().Key();
  if (code) {
    std::optional<std::string> c = text.size() <= kMaxCodeText ? CodeText(text) : std::nullopt;
    code_[path] = c ? "c:" + cas::DigestOf(*c).Key() : bytes;
  }
  return memo_[path] = std::move(bytes);
}

bool FileHashes::UsesTimeMacros(const std::string& path) const { return time_macros_.count(path) > 0; }

std::string FileHashes::Code(const std::string& path) const {
  auto it = code_.find(path);
  return it == code_.end() ? std::string() : it->second;
}

Result<std::map<std::string, std::string>> RecordDeps(const std::vector<std::string>& files, const RecordOptions& o,
                                                      FileHashes& hashes) {
  std::map<std::string, std::string> deps;
  std::vector<std::string> search;
  for (const auto& s : o.search) search.push_back(AbsolutePath(s, o.cwd));
  std::vector<std::string> stepped;
  for (const auto& f : files) {
    std::string p = AbsolutePath(f, o.cwd, &stepped);
    bool writable = Under(p, o.writable);
    if (!writable) {
      // A file of the image may be a symlink into the workspace.
      char real[PATH_MAX];
      if (::realpath(p.c_str(), real) != nullptr && Under(real, o.writable)) writable = true;
    }
    if (writable) {
      auto known = o.known.find(p);
      auto v = known != o.known.end() ? hashes.Get(p, 0, true, o.code) : hashes.Get(p, o.changed_since_ns, false, o.code);
      if (!v.ok()) return v.status();
      if (known != o.known.end() && *v != known->second) return FailedPrecondition(p + " changed during the compile");
      if (v->rfind("f:", 0) != 0) return FailedPrecondition("dependency " + p + " is " + *v + " after the compile");
      if (!o.time_macros_ok && hashes.UsesTimeMacros(p))
        return InvalidArgument(p + " uses __DATE__, __TIME__ or __TIMESTAMP__ (set SOURCE_DATE_EPOCH to cache it)");
      deps[p] = *v;
    } else {
      deps[p] = "i";
    }
  }
  for (auto& d : stepped)
    if (Under(d, o.writable)) deps.emplace(d, "d");  // the image's directories cannot change
  // Shadowing: a header found in search directory k would be replaced by one
  // of the same name created in a writable directory searched before it.
  for (const auto& f : files) {
    std::string p = AbsolutePath(f, o.cwd);
    for (size_t k = 0; k < search.size(); ++k) {
      const std::string& dir = search[k];
      if (!(p.size() > dir.size() && p.compare(0, dir.size(), dir) == 0 && (p[dir.size()] == '/' || dir == "/")))
        continue;
      std::string name = p.substr(dir == "/" ? 1 : dir.size() + 1);
      for (size_t j = 0; j < k; ++j) {
        if (search[j] == dir || !Under(search[j], o.writable)) continue;
        std::string candidate = search[j] + "/" + name;
        struct stat st {};
        if (::lstat(candidate.c_str(), &st) != 0 && (errno == ENOENT || errno == ENOTDIR))
          deps.emplace(candidate, "-");
      }
      break;
    }
  }
  return deps;
}

std::string PackDeps(const std::map<std::string, std::string>& deps) {
  std::string out;
  for (const auto& [k, v] : deps) {
    (out += std::to_string(k.size())) += ':';
    out += k;
    (out += std::to_string(v.size())) += ':';
    out += v;
  }
  return out;
}

std::optional<std::map<std::string, std::string>> UnpackDeps(std::string_view s) {
  std::map<std::string, std::string> out;
  auto field = [&](std::string& into) {
    size_t colon = s.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 9) return false;
    size_t n = 0;
    for (size_t i = 0; i < colon; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      n = n * 10 + static_cast<size_t>(s[i] - '0');
    }
    if (s.size() - colon - 1 < n) return false;
    into.assign(s.substr(colon + 1, n));
    s.remove_prefix(colon + 1 + n);
    return true;
  };
  while (!s.empty()) {
    std::string k, v;
    if (!field(k) || !field(v)) return std::nullopt;
    out.emplace(std::move(k), std::move(v));
  }
  return out;
}

std::optional<Mismatch> CheckManifest(const std::map<std::string, std::string>& deps, FileHashes& hashes) {
  for (const auto& [path, expected] : deps) {
    if (expected == "i") continue;
    std::string actual;
    if (expected == "d" || expected == "-") {
      struct stat st {};
      if (::lstat(path.c_str(), &st) != 0) actual = "-";
      else if (S_ISDIR(st.st_mode)) actual = "d";
      else if (S_ISLNK(st.st_mode)) actual = "a symlink";
      else actual = "exists";
      if (expected == "-" ? actual == "-" : actual == "d") continue;
    } else {
      auto v = hashes.Get(path);
      actual = v.ok() ? *v : "unreadable";
      if (actual == expected) continue;
    }
    return Mismatch{path, expected, actual};
  }
  return std::nullopt;
}

}  // namespace kiln::cc
