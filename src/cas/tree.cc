#include "cas/tree.h"

#include <algorithm>

#include "common/text.h"

namespace kiln::cas {

namespace {

constexpr std::string_view kMagic = "kiln-tree-1\n";

char KindChar(const Entry& e) {
  switch (e.kind) {
    case Kind::kFile: return e.executable ? 'x' : 'f';
    case Kind::kDir: return 'd';
    case Kind::kSymlink: return 'l';
  }
  return '?';
}

void AppendCounted(std::string* out, std::string_view s) {
  out->append(std::to_string(s.size()));
  out->push_back(':');
  out->append(s);
}

}  // namespace

// Strict UTF-8 (as PostgreSQL checks it): no overlong forms, no surrogates.
bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    if (c < 0x80) n = 0;
    else if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) n = 2;
    else if (c >= 0xf0 && c <= 0xf4) n = 3;
    else return false;
    if (i + n >= s.size() && n > 0) return false;
    for (size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    if (n > 0) {
      auto d = static_cast<unsigned char>(s[i + 1]);
      if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d >= 0xa0) || (c == 0xf0 && d < 0x90) || (c == 0xf4 && d >= 0x90))
        return false;
    }
    i += n + 1;
  }
  return true;
}

std::string Encode(const Directory& d) {
  std::string out(kMagic);
  for (const auto& e : d.entries) {
    out.push_back(KindChar(e));
    out.push_back(' ');
    AppendCounted(&out, e.name);
    out.push_back(' ');
    if (e.kind == Kind::kSymlink) AppendCounted(&out, e.target);
    else out.append(e.digest.Key());
    out.push_back('\n');
  }
  return out;
}

Digest DigestOf(const Directory& d) { return DigestOf(std::string_view(Encode(d))); }

Status CheckName(std::string_view name) {
  if (name.empty()) return InvalidArgument("empty file name");
  if (name == "." || name == "..") return InvalidArgument("file name '" + std::string(name) + "' is not allowed");
  if (name.size() > 255) return InvalidArgument("file name longer than 255 bytes");
  if (name.find('/') != std::string_view::npos)
    return InvalidArgument("file name '" + Printable(name) + "' contains '/'");
  if (name.find('\0') != std::string_view::npos)
    return InvalidArgument("file name '" + Printable(name) + "' contains a NUL byte");
  if (!ValidUtf8(name)) return InvalidArgument("file name '" + Printable(name) + "' is not valid UTF-8");
  return Status::Ok();
}

Status CheckTarget(std::string_view t) {
  if (t.empty()) return InvalidArgument("empty symlink target");
  if (t.size() > 4095) return InvalidArgument("symlink target longer than 4095 bytes");
  if (t.find('\0') != std::string_view::npos) return InvalidArgument("symlink target contains a NUL byte");
  if (!ValidUtf8(t)) return InvalidArgument("symlink target '" + Printable(t) + "' is not valid UTF-8");
  if (t.front() == '/')
    return InvalidArgument("symlink target '" + Printable(t) + "' is absolute; only links inside the tree are allowed");
  return Status::Ok();
}

bool LinkStaysInside(std::string_view dir_path, std::string_view target) {
  if (target.empty() || target.front() == '/') return false;
  // "../" parts may only lead the target, and no further up than the link's
  // own depth: they then climb real directories of the tree. A ".." after a
  // name could climb out of wherever that name (maybe a symlink) leads.
  long depth = 0;
  if (!dir_path.empty()) depth = 1 + std::count(dir_path.begin(), dir_path.end(), '/');
  bool descended = false;
  size_t i = 0;
  while (i <= target.size()) {
    size_t j = target.find('/', i);
    if (j == std::string_view::npos) j = target.size();
    auto part = target.substr(i, j - i);
    if (part == "..") {
      if (descended || --depth < 0) return false;
    } else if (!part.empty() && part != ".") {
      descended = true;
    }
    i = j + 1;
  }
  return true;
}

Status CheckDirectory(const Directory& d, std::string_view path) {
  auto where = [&](const std::string& name) {
    return path.empty() ? Printable(name) : Printable(std::string(path) + "/" + name);
  };
  for (size_t i = 0; i < d.entries.size(); ++i) {
    const Entry& e = d.entries[i];
    if (auto s = CheckName(e.name); !s.ok())
      return InvalidArgument("in directory '" + Printable(path.empty() ? "." : std::string(path)) + "': " + s.message());
    // The canonical order: strictly increasing bytewise (std::string's
    // operator<, which compares as unsigned char), so no name twice.
    if (i > 0 && d.entries[i - 1].name == e.name) return InvalidArgument(where(e.name) + ": duplicate entry");
    if (i > 0 && e.name < d.entries[i - 1].name) {
      return InvalidArgument("in directory '" + Printable(path.empty() ? "." : std::string(path)) + "': entry '" +
                             Printable(e.name) + "' is out of order: it comes after '" +
                             Printable(d.entries[i - 1].name) +
                             "'; entries must be sorted by name in bytewise order, each name once");
    }
    switch (e.kind) {
      case Kind::kFile:
      case Kind::kDir:
        if (auto s = CheckDigest(e.digest, where(e.name)); !s.ok()) return s;
        if (!e.target.empty()) return InvalidArgument(where(e.name) + ": only a symlink has a target");
        if (e.kind == Kind::kDir && e.executable)
          return InvalidArgument(where(e.name) + ": a directory has no executable bit");
        break;
      case Kind::kSymlink:
        if (auto s = CheckTarget(e.target); !s.ok()) return InvalidArgument(where(e.name) + ": " + s.message());
        if (e.digest != Digest{} || e.executable)
          return InvalidArgument(where(e.name) + ": a symlink has only a target");
        break;
    }
  }
  return Status::Ok();
}

Status Normalize(Directory* d, std::string_view path) {
  std::sort(d->entries.begin(), d->entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return CheckDirectory(*d, path);
}

std::string EntryValue(const Entry& e) {
  std::string v(1, KindChar(e));
  v.push_back(':');
  v += e.kind == Kind::kSymlink ? e.target : e.digest.Key();
  return v;
}

Result<Entry> EntryFromValue(std::string name, std::string_view v) {
  Entry e;
  e.name = std::move(name);
  if (v.size() < 2 || v[1] != ':') return Internal("bad tree entry value for '" + e.name + "'");
  char k = v[0];
  v.remove_prefix(2);
  if (k == 'l') {
    e.kind = Kind::kSymlink;
    e.target = std::string(v);
    return e;
  }
  if (k == 'f' || k == 'x') e.kind = Kind::kFile, e.executable = (k == 'x');
  else if (k == 'd') e.kind = Kind::kDir;
  else return Internal("bad tree entry kind for '" + e.name + "'");
  auto d = ParseDigest(v);
  if (!d.ok()) return Internal("bad digest in tree entry '" + e.name + "': " + d.status().message());
  e.digest = *d;
  return e;
}

Status CheckNodeSizes(const Digest& root, const std::vector<std::pair<Digest, Directory>>& nodes) {
  std::unordered_map<std::string_view, int64_t> size_of;
  for (const auto& [d, dir] : nodes) size_of.emplace(d.hash, d.size);
  auto stated = [&](const Digest& d) -> std::optional<int64_t> {
    auto it = size_of.find(d.hash);
    if (it == size_of.end() || it->second == d.size) return std::nullopt;
    return it->second;
  };
  if (auto actual = stated(root)) {
    return InvalidArgument("tree root sha256:" + root.hash + " is given with size " + std::to_string(root.size) +
                           ", but that directory node is " + std::to_string(*actual) + " bytes");
  }
  for (const auto& [d, dir] : nodes) {
    for (const auto& e : dir.entries) {
      if (e.kind != Kind::kDir) continue;
      if (auto actual = stated(e.digest)) {
        return InvalidArgument("directory '" + Printable(e.name) + "' of tree node sha256:" + d.hash +
                               " names node sha256:" + e.digest.hash + " with size " +
                               std::to_string(e.digest.size) + ", but that node is " + std::to_string(*actual) +
                               " bytes");
      }
    }
  }
  return Status::Ok();
}

Result<std::vector<PathEntry>> Flatten(const Digest& root,
                                       const std::unordered_map<std::string, const Directory*>& nodes,
                                       int64_t max_entries) {
  std::vector<PathEntry> out;
  struct Item {
    std::string hash, path;
    int depth;
  };
  std::vector<Item> stack{{root.hash, "", 0}};
  // Paths are bounded one by one and in total, so that a small tree whose
  // nodes are shared many times cannot make a huge list.
  constexpr size_t kMaxPath = 4095;
  constexpr size_t kMaxPathBytes = size_t{256} << 20;
  size_t path_bytes = 0;
  while (!stack.empty()) {
    Item it = std::move(stack.back());
    stack.pop_back();
    auto n = nodes.find(it.hash);
    if (n == nodes.end())
      return NotFound("directory " +
                      (it.path.empty() ? std::string("at the root") : "'" + Printable(it.path) + "'") +
                      " (sha256:" + it.hash + ") is not in CAS");
    if (it.depth > 512) return InvalidArgument("directories nested deeper than 512 levels");
    for (const auto& e : n->second->entries) {
      if (static_cast<int64_t>(out.size()) >= max_entries)
        return ResourceExhausted("the tree has more than " + std::to_string(max_entries) +
                                 " entries (files, directories and symlinks)");
      if (it.path.size() + 1 + e.name.size() > kMaxPath)
        return InvalidArgument("a path in the tree is longer than 4095 bytes (under '" + Printable(it.path) + "')");
      std::string p = JoinPath(it.path, e.name);
      if ((path_bytes += p.size()) > kMaxPathBytes)
        return ResourceExhausted("the tree's paths add up to more than 256 MiB");
      if (auto s = CheckName(e.name); !s.ok()) return InvalidArgument(Printable(p) + ": " + s.message());
      if (e.kind == Kind::kSymlink && !LinkStaysInside(it.path, e.target))
        return InvalidArgument("symlink '" + Printable(p) + "' -> '" + Printable(e.target) + "' leaves the tree");
      if (e.kind == Kind::kDir) stack.push_back({e.digest.hash, p, it.depth + 1});
      out.push_back({std::move(p), e});
    }
  }
  return out;
}

void DiffDirectories(std::string_view path, const Directory& before, const Directory& after,
                     std::vector<Change>* changes,
                     std::vector<std::tuple<std::string, Digest, Digest>>* descend) {
  // Both sides are sorted by name: one merge pass.
  size_t i = 0, j = 0;
  const auto& a = before.entries;
  const auto& b = after.entries;
  while (i < a.size() || j < b.size()) {
    int cmp = i == a.size() ? 1 : j == b.size() ? -1 : a[i].name.compare(b[j].name);
    if (cmp < 0) {
      changes->push_back({Change::kRemoved, JoinPath(path, a[i].name), a[i], std::nullopt});
      ++i;
    } else if (cmp > 0) {
      changes->push_back({Change::kAdded, JoinPath(path, b[j].name), std::nullopt, b[j]});
      ++j;
    } else {
      if (a[i] != b[j]) {
        if (a[i].kind == Kind::kDir && b[j].kind == Kind::kDir) {
          descend->emplace_back(JoinPath(path, a[i].name), a[i].digest, b[j].digest);
        } else {
          changes->push_back({Change::kModified, JoinPath(path, a[i].name), a[i], b[j]});
        }
      }
      ++i;
      ++j;
    }
  }
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out(dir);
  out.push_back('/');
  out.append(name);
  return out;
}

Status CheckRelativePath(std::string_view p, std::string_view what) {
  if (p.empty()) return InvalidArgument(std::string(what) + " is empty");
  if (p.front() == '/')
    return InvalidArgument(std::string(what) + " '" + Printable(p) + "' is absolute; give it relative to the tree's root");
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    auto part = p.substr(i, j - i);
    if (auto s = CheckName(part); !s.ok())
      return InvalidArgument(std::string(what) + " '" + Printable(p) + "': " + s.message());
    i = j + 1;
  }
  return Status::Ok();
}

}  // namespace kiln::cas
