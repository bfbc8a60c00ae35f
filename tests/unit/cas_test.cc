// Digests, canonical directory nodes, tree walking, the hash cache and the
// blob store: everything of CAS that needs no server.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "api/convert.h"
#include "cas/digest.h"
#include "cas/oci.h"
#include "cas/store.h"
#include "cas/tree.h"
#include "cas/unpack.h"
#include "cas/walk.h"
#include "common/text.h"
#include "harness/harness.h"

namespace kiln::cas {
namespace {

namespace fs = std::filesystem;

void SetMtime(const std::string& path, time_t t) {
  struct timespec ts[2] = {{t, 0}, {t, 0}};
  ::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW);
}

// The sample tree of the pinned digests below (computed independently of
// this code, from the encoding in docs/architecture.md).
void MakeSample(const std::string& root, bool reverse_order) {
  std::vector<std::function<void()>> steps = {
      [&] { test::WriteFile(root + "/a.txt", "hello\n"); },
      [&] { test::WriteFile(root + "/bin/run.sh", "#!/bin/sh\necho hi\n", true); },
      [&] { fs::create_directories(root + "/empty"); },
      [&] { fs::create_symlink("a.txt", root + "/link"); },
      [&] { test::WriteFile(root + "/src/lib/util.c", "int util(void) { return 1; }\n"); },
      [&] { test::WriteFile(root + "/src/main.c", "int main(void) { return 0; }\n"); },
  };
  if (reverse_order) std::reverse(steps.begin(), steps.end());
  for (auto& s : steps) s();
}

Result<BuiltTree> Build(const std::string& root, WalkOptions o = {}) { return BuildTree(root, o); }

TEST(Digest, FormatsAndParses) {
  Digest d = DigestOf(std::string_view("hello\n"));
  EXPECT_EQ(d.ToString(), "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03/6");
  auto p = ParseDigest(d.ToString());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, d);
  EXPECT_FALSE(ParseDigest("sha256:abc/6").ok());
  EXPECT_FALSE(ParseDigest("sha256:" + std::string(64, 'A') + "/6").ok());
  EXPECT_FALSE(ParseDigest("sha256:" + d.hash + "/-1").ok());
  EXPECT_FALSE(ParseDigest("sha256:" + d.hash).ok());
}

// Found by tests/fuzz (digest): a refused digest was quoted raw, whole and
// with its control bytes, in the message a client or a log line gets.
TEST(Digest, ARefusedDigestIsQuotedEscapedAndCut) {
  auto nl = ParseDigest("\n");
  ASSERT_FALSE(nl.ok());
  EXPECT_EQ(nl.status().message(), "bad digest '\\x0a': expected sha256:<64 hex digits>/<size>");
  auto huge = ParseDigest(std::string(1 << 20, 'a') + "/1");
  ASSERT_FALSE(huge.ok());
  EXPECT_LT(huge.status().message().size(), 200u);
  Status hash = CheckDigest(Digest{"\x1b[2J", 1}, "input_root");
  EXPECT_EQ(hash.message(), "input_root: digest hash '\\x1b[2J' is not 64 lowercase hex digits");
}

TEST(Tree, CanonicalEncodingIsPinned) {
  Directory d;
  d.entries.push_back({"a.txt", Kind::kFile, DigestOf(std::string_view("hello\n")), false, ""});
  d.entries.push_back({"link", Kind::kSymlink, {}, false, "a.txt"});
  d.entries.push_back({"sub", Kind::kDir, DigestOf(Directory{}), false, ""});
  d.entries.push_back({"x", Kind::kFile, DigestOf(std::string_view("")), true, ""});
  ASSERT_TRUE(Normalize(&d, "").ok());
  EXPECT_EQ(Encode(Directory{}), "kiln-tree-1\n");
  EXPECT_EQ(Encode(d),
            "kiln-tree-1\n"
            "f 5:a.txt 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03/6\n"
            "l 4:link 5:a.txt\n"
            "d 3:sub 63cce0e03ed1835b51a4e39caf5c2671410c56bb310fb953e5fd792156c2cc89/12\n"
            "x 1:x e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0\n");
}

TEST(Tree, DiffListsChangesAndDescendsOnlyIntoChangedDirectories) {
  auto file = [](const char* name, const char* content, bool exec = false) {
    return Entry{name, Kind::kFile, DigestOf(std::string_view(content)), exec, ""};
  };
  auto dir = [](const char* name, const char* seed) {
    return Entry{name, Kind::kDir, DigestOf(std::string_view(seed)), false, ""};
  };
  Directory before{{file("a.c", "a"), dir("inc", "inc-1"), file("old.h", "o"), dir("same", "s"),
                    file("run.sh", "r"), Entry{"x", Kind::kSymlink, {}, false, "a.c"}}};
  Directory after{{file("a.c", "a2"), dir("inc", "inc-2"), file("new.h", "n"), dir("same", "s"),
                   file("run.sh", "r", true), dir("x", "now-a-dir")}};
  std::vector<Change> changes;
  std::vector<std::tuple<std::string, Digest, Digest>> descend;
  DiffDirectories("src", before, after, &changes, &descend);
  std::vector<std::string> got;
  for (const auto& c : changes) {
    got.push_back(std::string(c.kind == Change::kAdded ? "+" : c.kind == Change::kRemoved ? "-" : "~") + c.path);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"~src/a.c", "+src/new.h", "-src/old.h", "~src/run.sh", "~src/x"}));
  ASSERT_EQ(descend.size(), 1u);  // inc differs; same does not
  EXPECT_EQ(std::get<0>(descend[0]), "src/inc");
  EXPECT_FALSE(changes[1].before.has_value());
  EXPECT_EQ(changes[3].after->executable, true);
}

TEST(Tree, SampleTreeHasItsPinnedRootDigest) {
  test::TempDir dir;
  MakeSample(dir.path(), false);
  auto t = Build(dir.path());
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->root.ToString(), "sha256:8b88067f76153ad26ebc72b04da3eed58454b63003a32c76c5915656beb94681/337");
  EXPECT_EQ(t->file_count, 4);
  EXPECT_EQ(t->dir_count, 5);  // root, bin, empty, src, src/lib
}

TEST(Tree, RootDigestIgnoresWalkOrderAndMtimes) {
  test::TempDir a, b;
  MakeSample(a.path(), false);
  MakeSample(b.path(), true);
  SetMtime(b.path() + "/a.txt", 1000);
  SetMtime(b.path() + "/src/main.c", 2000000000);
  auto ta = Build(a.path()), tb = Build(b.path());
  ASSERT_TRUE(ta.ok() && tb.ok());
  EXPECT_EQ(ta->root, tb->root);
}

TEST(Tree, EmptyDirectoryAndExecutableBitChangeTheRoot) {
  test::TempDir dir;
  MakeSample(dir.path(), false);
  auto before = Build(dir.path());
  fs::create_directories(dir.path() + "/src/new-empty");
  auto with_dir = Build(dir.path());
  ::chmod((dir.path() + "/src/main.c").c_str(), 0755);
  auto with_exec = Build(dir.path());
  ASSERT_TRUE(before.ok() && with_dir.ok() && with_exec.ok());
  EXPECT_NE(before->root, with_dir->root);
  EXPECT_NE(with_dir->root, with_exec->root);
  // Same content: the blob set is unchanged, only nodes differ.
  EXPECT_EQ(before->files.size(), with_exec->files.size());
}

TEST(Tree, NamesAreSinglePathComponents) {
  for (const char* bad : {"", ".", "..", "a/b", "/"}) EXPECT_FALSE(CheckName(bad).ok()) << bad;
  EXPECT_FALSE(CheckName(std::string("a\0b", 3)).ok());
  EXPECT_FALSE(CheckName("\xff\xfe").ok());
  EXPECT_FALSE(CheckName(std::string(256, 'a')).ok());
  EXPECT_TRUE(CheckName("..hidden").ok());
  EXPECT_TRUE(CheckName("ünïcödé file").ok());
  Directory dup;
  dup.entries.push_back({"x", Kind::kFile, DigestOf(std::string_view("1")), false, ""});
  dup.entries.push_back({"x", Kind::kDir, DigestOf(Directory{}), false, ""});
  auto s = Normalize(&dup, "sub");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("sub/x: duplicate entry"), std::string::npos) << s.message();
}

// Finding 3 of the security probe: UploadTrees sorted what it was sent, so
// a node whose entries were out of the canonical order was accepted.
TEST(Tree, UploadTreesRejectsEntriesOutOfOrder) {
  auto file = [](std::string name) {
    return Entry{std::move(name), Kind::kFile, DigestOf(std::string_view("x")), false, ""};
  };
  // Bytewise: upper case before lower case, '-' before '.', UTF-8 after ASCII.
  Directory sorted{{file("B"), file("a-b"), file("a.b"), file("b"), file("\xc3\xa9t\xc3\xa9")}};
  EXPECT_TRUE(CheckDirectory(sorted, "node sha256:x/1").ok());

  Directory swapped{{file("a.b"), file("b"), file("a-b")}};
  Status s = CheckDirectory(swapped, "node sha256:abc/99");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "in directory 'node sha256:abc/99': entry 'a-b' is out of order: it comes after 'b'; entries must be "
            "sorted by name in bytewise order, each name once");
  // Sorted as a locale or case-insensitively would: not the canonical order.
  Directory caseless{{file("a"), file("B")}};
  EXPECT_FALSE(CheckDirectory(caseless, "").ok());
  Directory dup{{file("x"), file("x")}};
  s = CheckDirectory(dup, "sub");
  EXPECT_NE(s.message().find("sub/x: duplicate entry"), std::string::npos) << s.message();

  // The walk (kiln submit's uploader, the worker's outputs) sorts the same way.
  test::TempDir dir;
  for (const char* name : {"B", "a-b", "a.b", "b", "\xc3\xa9t\xc3\xa9", "_x", "Z9"})
    test::WriteFile(dir.path() + "/d/" + name, name);
  auto t = Build(dir.path());
  ASSERT_TRUE(t.ok()) << t.status().message();
  for (const auto& [digest, node] : t->nodes)
    EXPECT_TRUE(CheckDirectory(node, digest.ToString()).ok()) << CheckDirectory(node, digest.ToString()).message();
}

// Finding 2 of the security probe: nodes are looked up by hash, so a root
// (or a directory entry) whose stated size was wrong was accepted.
TEST(Tree, CheckNodeSizesRejectsARootOrEntryWithTheWrongSize) {
  const Directory empty;
  const Digest e = DigestOf(empty);  // 12 bytes
  Directory top{{Entry{"sub", Kind::kDir, e, false, ""}}};
  const Digest t = DigestOf(top);
  std::vector<std::pair<Digest, Directory>> nodes{{t, top}, {e, empty}};
  EXPECT_TRUE(CheckNodeSizes(t, nodes).ok());

  Status s = CheckNodeSizes(Digest{t.hash, t.size + 1}, nodes);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "tree root sha256:" + t.hash + " is given with size " + std::to_string(t.size + 1) +
                             ", but that directory node is " + std::to_string(t.size) + " bytes");

  // An entry naming the empty node with another size: its parent hashes
  // fine (the size is part of its encoding), the entry still lies.
  Directory lying{{Entry{"sub", Kind::kDir, Digest{e.hash, 99}, false, ""}}};
  const Digest l = DigestOf(lying);
  s = CheckNodeSizes(l, {{l, lying}, {e, empty}});
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "directory 'sub' of tree node sha256:" + l.hash + " names node sha256:" + e.hash +
                             " with size 99, but that node is 12 bytes");
  // A node not among them is not judged here (Flatten reports it missing).
  EXPECT_TRUE(CheckNodeSizes(l, {{l, lying}}).ok());
}

TEST(Tree, SymlinksMustStayInside) {
  EXPECT_TRUE(LinkStaysInside("", "a/b"));
  EXPECT_TRUE(LinkStaysInside("x/y", "../../z"));
  EXPECT_FALSE(LinkStaysInside("x/y", "../../../z"));
  EXPECT_FALSE(LinkStaysInside("", "../z"));
  EXPECT_FALSE(LinkStaysInside("", "a/../../z"));
  EXPECT_FALSE(LinkStaysInside("", "/etc/passwd"));
  // ".." after a name could climb out of wherever that name leads: a -> "."
  // makes "a/.." the tree's parent.
  EXPECT_FALSE(LinkStaysInside("", "a/.."));
  EXPECT_FALSE(LinkStaysInside("x", "../y/../z"));
  EXPECT_TRUE(LinkStaysInside("x", "./../y/./z"));
  EXPECT_FALSE(CheckTarget("/etc/passwd").ok());

  test::TempDir dir;
  test::WriteFile(dir.path() + "/src/a.c", "x");
  fs::create_symlink("/etc/passwd", dir.path() + "/src/abs");
  auto t = Build(dir.path());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("src/abs"), std::string::npos) << t.status().message();
  EXPECT_NE(t.status().message().find("absolute"), std::string::npos) << t.status().message();
  fs::remove(dir.path() + "/src/abs");
  fs::create_symlink("../../outside", dir.path() + "/src/up");
  t = Build(dir.path());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("src/up: symlink target '../../outside' leaves the tree"), std::string::npos)
      << t.status().message();
}

TEST(Tree, FlattenBoundsWhatASmallHostileTreeCanCost) {
  // A chain of directories with 255-byte names: paths past 4095 bytes.
  std::unordered_map<std::string, const Directory*> nodes;
  std::vector<std::unique_ptr<Directory>> keep;
  Digest child = DigestOf(Directory{});
  keep.push_back(std::make_unique<Directory>());
  nodes[child.hash] = keep.back().get();
  for (int i = 0; i < 20; ++i) {
    auto d = std::make_unique<Directory>();
    d->entries.push_back({std::string(255, 'a'), Kind::kDir, child, false, ""});
    child = DigestOf(*d);
    nodes[child.hash] = d.get();
    keep.push_back(std::move(d));
  }
  auto deep = Flatten(child, nodes, 1000000);
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("longer than 4095 bytes"), std::string::npos) << deep.status().message();

  // One node of 1,000 files referenced 1,000 times: a million paths from two
  // small nodes. The cap stops it.
  auto files = std::make_unique<Directory>();
  for (int i = 0; i < 1000; ++i)
    files->entries.push_back({"f" + std::to_string(i), Kind::kFile, DigestOf(std::string_view("x")), false, ""});
  ASSERT_TRUE(Normalize(files.get(), "").ok());
  Digest fd = DigestOf(*files);
  auto fan = std::make_unique<Directory>();
  for (int i = 0; i < 1000; ++i) fan->entries.push_back({"d" + std::to_string(i), Kind::kDir, fd, false, ""});
  ASSERT_TRUE(Normalize(fan.get(), "").ok());
  Digest top = DigestOf(*fan);
  nodes[fd.hash] = files.get();
  nodes[top.hash] = fan.get();
  auto wide = Flatten(top, nodes, 50000);
  ASSERT_FALSE(wide.ok());
  EXPECT_EQ(wide.status().code(), Code::kResourceExhausted);
}

// Found by tests/fuzz (tree): a symlink entry with an empty hash but a size
// passed CheckDirectory ("a symlink has only a target" looked at the hash
// alone). The encoding drops the size, so two nodes with one digest
// compared unequal, and a diff reported a change that is none.
TEST(Tree, ASymlinkCarriesNoDigestAtAll) {
  Entry link{"l", Kind::kSymlink, Digest{"", -9150751488517996286}, false, "a"};
  Status s = CheckDirectory(Directory{{link}}, "");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "l: a symlink has only a target");
  link.digest = {};
  EXPECT_TRUE(CheckDirectory(Directory{{link}}, "").ok());
}

// Found by tests/fuzz (tree): names may hold control characters (a file
// may be called that); messages quote them escaped: the kind check of a
// received node, and the missing node of a tree.
TEST(Tree, NamesInMessagesAreEscaped) {
  v1::Directory node;
  node.add_entries()->set_name("\n");  // no kind
  auto d = api::FromProto(node, "sha256:x/1");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().message(),
            "in tree node sha256:x/1: entry '\\x0a' has no valid kind (file, directory or symlink)");

  Directory root{{Entry{"imaxx\x1d" "b", Kind::kDir, DigestOf(std::string_view("absent")), false, ""}}};
  Digest rd = DigestOf(root);
  std::unordered_map<std::string, const Directory*> nodes{{rd.hash, &root}};
  auto flat = Flatten(rd, nodes, 100);
  ASSERT_FALSE(flat.ok());
  EXPECT_EQ(flat.status().code(), Code::kNotFound);
  EXPECT_NE(flat.status().message().find("directory 'imaxx\\x1db' (sha256:"), std::string::npos)
      << Printable(flat.status().message());
}

// Found by tests/fuzz (oci): nlohmann's value() throws when a key holds
// another type, and the image service's handler would have thrown with it.
TEST(Oci, FieldsOfTheWrongTypeAreRefusedNotThrown) {
  Status arch = oci::CheckConfig(R"({"architecture": 64, "os": ["linux"]})");
  EXPECT_EQ(arch.code(), Code::kInvalidArgument);
  EXPECT_EQ(arch.message(), "image config: \"architecture\" and \"os\" must be strings");
  EXPECT_TRUE(oci::CheckConfig(R"({"architecture": "amd64"})").ok());
  EXPECT_TRUE(oci::CheckConfig("{}").ok());
  EXPECT_FALSE(oci::CheckConfig(R"({"architecture": ""})").ok());

  const std::string hex(64, 'a');
  const std::string rest = R"(, "config": {"digest": "sha256:)" + hex + R"(", "size": 2}, "layers": [{"mediaType": )"
                           R"("application/vnd.oci.image.layer.v1.tar", "digest": "sha256:)" + hex + R"(", "size": 3}]})";
  auto version = oci::ParseManifest(R"({"schemaVersion": "2")" + rest);
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(version.status().message(), "image manifest: schemaVersion must be 2");
  EXPECT_TRUE(oci::ParseManifest(R"({"schemaVersion": 2)" + rest).ok());
  auto type = oci::ParseManifest(R"({"schemaVersion": 2, "mediaType": "x\u001b[2J")" + rest);
  ASSERT_FALSE(type.ok());
  EXPECT_EQ(type.status().message(), "image manifest: unsupported mediaType x\\x1b[2J");
}

// A ustar archive of regular files, as tar writes them.
std::string Tar(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  for (const auto& [name, data] : files) {
    std::string h(512, '\0');
    name.copy(h.data(), 100);
    std::snprintf(&h[100], 8, "%07o", 0644u);
    std::snprintf(&h[108], 8, "%07o", 0u);
    std::snprintf(&h[116], 8, "%07o", 0u);
    std::snprintf(&h[124], 12, "%011zo", data.size());
    std::snprintf(&h[136], 12, "%011o", 0u);
    h[156] = '0';
    std::memcpy(&h[257], "ustar\0" "00", 8);
    std::memset(&h[148], ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(&h[148], 8, "%06o", sum);
    h[155] = ' ';
    out += h + data + std::string((512 - data.size() % 512) % 512, '\0');
  }
  return out + std::string(1024, '\0');
}

// Found by tests/fuzz (unpack): a whiteout ".wh." at the archive's root
// removed the destination itself, and ".wh..." would remove its parent (the
// image store): remove_all(dest + "/.."). Now refused before anything moves.
TEST(Unpack, AWhiteoutNamesAnEntryNeverItsDirectoryOrParent) {
  test::TempDir dir;
  const std::string dest = dir.path() + "/dest", layer = dir.path() + "/layer.tar";
  test::WriteFile(dest + "/etc/passwd", "root");
  test::WriteFile(dir.path() + "/outside/keep", "sentinel");
  for (const char* wh : {".wh.", ".wh..", ".wh...", "etc/.wh.", "etc/.wh...", "etc/.wh.."}) {
    test::WriteFile(layer, Tar({{"etc/.wh.passwd", ""}, {wh, ""}}));
    auto st = Unpack(layer, dest, UnpackOptions{});
    ASSERT_FALSE(st.ok()) << wh;
    EXPECT_EQ(st.status().message(), "whiteout '" + std::string(wh) + "' names no entry of its directory");
    EXPECT_TRUE(fs::exists(dest + "/etc")) << wh;
    EXPECT_TRUE(fs::exists(dir.path() + "/outside/keep")) << wh;
  }
  test::WriteFile(layer, Tar({{"etc/.wh.passwd", ""}}));
  ASSERT_TRUE(Unpack(layer, dest, UnpackOptions{}).ok());
  EXPECT_FALSE(fs::exists(dest + "/etc/passwd"));
  EXPECT_TRUE(fs::is_directory(dest + "/etc"));
}

// Found by tests/fuzz (unpack): names from the archive were quoted raw.
TEST(Unpack, NamesFromTheArchiveAreQuotedEscaped) {
  test::TempDir dir;
  const std::string dest = dir.path() + "/dest", layer = dir.path() + "/layer.tar";
  test::WriteFile(dest + "/etc", "a file");
  test::WriteFile(layer, Tar({{"etc/passw\x01", "x"}}));
  auto st = Unpack(layer, dest, UnpackOptions{});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().message(), "entry 'etc/passw\\x01' lies under 'etc', which is not a directory");
}

TEST(Tree, SpecialFilesAreRefusedByName) {
  test::TempDir dir;
  test::WriteFile(dir.path() + "/ok.c", "x");
  ASSERT_EQ(::mkfifo((dir.path() + "/pipe").c_str(), 0644), 0);
  auto t = Build(dir.path());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("pipe: not a regular file"), std::string::npos) << t.status().message();
  WalkOptions o;
  o.exclude = {"pipe"};
  EXPECT_TRUE(Build(dir.path(), o).ok());
}

TEST(Tree, IncludeAndExcludeSelectFiles) {
  test::TempDir dir;
  MakeSample(dir.path(), false);
  WalkOptions ex;
  ex.exclude = {"src", "*.sh"};
  auto t = Build(dir.path(), ex);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->file_count, 1);  // a.txt
  WalkOptions in;
  in.include = {"*.c"};
  t = Build(dir.path(), in);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->file_count, 2);
}

TEST(Tree, GitCheckoutSendsGitsFileList) {
  test::TempDir dir;
  MakeSample(dir.path(), false);
  test::WriteFile(dir.path() + "/.gitignore", "*.o\nbuild/\n");
  test::WriteFile(dir.path() + "/src/main.o", "object");
  test::WriteFile(dir.path() + "/build/out", "built");
  auto init = test::RunCommand({"/usr/bin/git", "-C", dir.path(), "init", "-q"}, std::chrono::seconds(20));
  ASSERT_EQ(init.exit_code, 0) << init.err;
  WalkOptions o;
  o.use_git = true;
  auto t = Build(dir.path(), o);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_TRUE(t->used_git);
  EXPECT_EQ(t->file_count, 5);  // the sample's 4 and .gitignore; not main.o, not build/
  bool has_link = false;
  for (const auto& [d, dir_node] : t->nodes)
    for (const auto& e : dir_node.entries) has_link |= e.kind == Kind::kSymlink;
  EXPECT_TRUE(has_link);
}

TEST(HashCache, UnchangedFilesAreNotReadAgain) {
  test::TempDir dir, cache_dir;
  MakeSample(dir.path(), false);
  for (const char* f : {"a.txt", "bin/run.sh", "src/lib/util.c", "src/main.c"}) SetMtime(dir.path() + "/" + f, 1000000);
  std::string file = cache_dir.path() + "/hashes";
  auto first = HashCache::Load(file);
  WalkOptions o;
  o.cache = &first;
  auto t1 = Build(dir.path(), o);
  ASSERT_TRUE(t1.ok());
  EXPECT_EQ(t1->hashed_files, 4);
  ASSERT_TRUE(first.Save().ok());

  auto second = HashCache::Load(file);
  o.cache = &second;
  auto t2 = Build(dir.path(), o);
  ASSERT_TRUE(t2.ok());
  EXPECT_EQ(t2->hashed_files, 0);
  EXPECT_EQ(t2->root, t1->root);

  // A changed file (same mtime, other size and ctime) is read again.
  test::WriteFile(dir.path() + "/src/main.c", "int main(void) { return 1; }\n\n");
  SetMtime(dir.path() + "/src/main.c", 1000000);
  auto third = HashCache::Load(file);
  o.cache = &third;
  auto t3 = Build(dir.path(), o);
  ASSERT_TRUE(t3.ok());
  EXPECT_EQ(t3->hashed_files, 1);
  EXPECT_NE(t3->root, t1->root);
}

std::vector<std::string> FilesUnder(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path().lexically_relative(dir).string());
  return out;
}

TEST(DirStore, RefusesMismatchesAndNeverShowsHalfBlobs) {
  test::TempDir dir;
  auto store = OpenDirStore(dir.path());
  ASSERT_TRUE(store.ok());
  std::string data(100000, 'x');
  Digest d = DigestOf(std::string_view(data));
  Digest wrong = DigestOf(std::string_view("something else"));
  wrong.size = d.size;
  auto s = (*store)->Put(wrong, data);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("does not match"), std::string::npos);
  EXPECT_TRUE(FilesUnder(dir.path()).empty());

  // A streamed upload shows nothing until it is complete and verified.
  auto w = (*store)->OpenWriter(d, "up1");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(std::string_view(data).substr(0, 40000)).ok());
  EXPECT_FALSE((*store)->Has(d));
  w->reset();
  EXPECT_EQ((*store)->PendingSize(d, "up1"), 40000);
  auto resumed = (*store)->OpenWriter(d, "up1");
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ((*resumed)->committed(), 40000);
  ASSERT_TRUE((*resumed)->Append(std::string_view(data).substr(40000)).ok());
  ASSERT_TRUE((*resumed)->Commit().ok());
  EXPECT_TRUE((*store)->Has(d));
  auto back = (*store)->Read(d, 0, 0);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, data);
  EXPECT_EQ(FilesUnder(dir.path()), std::vector<std::string>{"blobs/" + d.hash.substr(0, 2) + "/" + d.hash});

  // A stream whose bytes are wrong is dropped at commit.
  auto bad = (*store)->OpenWriter(wrong, "up2");
  ASSERT_TRUE(bad.ok());
  ASSERT_TRUE((*bad)->Append(data).ok());
  EXPECT_EQ((*bad)->Commit().code(), Code::kInvalidArgument);
  EXPECT_FALSE((*store)->Has(wrong));
  EXPECT_EQ(FilesUnder(dir.path()).size(), 1u);
}

TEST(DirStore, PutManyStoresEachVerifiedBlob) {
  test::TempDir dir;
  auto store = OpenDirStore(dir.path());
  ASSERT_TRUE(store.ok());
  std::string a = "alpha", b = "beta";
  Digest da = DigestOf(std::string_view(a)), db = DigestOf(std::string_view(b));
  auto st = (*store)->PutMany({{da, a}, {db, std::string_view("not beta")}});
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[0].ok());
  EXPECT_FALSE(st[1].ok());
  EXPECT_TRUE((*store)->Has(da));
  EXPECT_FALSE((*store)->Has(db));
}

// Has() remembers what it found (a submit asks for thousands of blobs,
// mostly the ones it asked for last time); what the collector removed is
// absent at once, and a claim of the wrong size is never taken for it.
TEST(DirStore, ABlobTheCollectorRemovedIsAbsentAtOnce) {
  test::TempDir dir;
  auto store = OpenDirStore(dir.path());
  ASSERT_TRUE(store.ok());
  std::string data = "int main() { return 0; }\n";
  Digest d = DigestOf(std::string_view(data));
  ASSERT_TRUE((*store)->Put(d, data).ok());
  ASSERT_TRUE((*store)->Has(d));
  ASSERT_TRUE((*store)->Has(d));  // the second answer is the remembered one
  Digest longer = d;
  longer.size += 1;
  EXPECT_FALSE((*store)->Has(longer));
  ASSERT_TRUE((*store)->RemoveIfUnused(d, ::time(nullptr) + 10));
  EXPECT_FALSE((*store)->Has(d));
  EXPECT_TRUE(FilesUnder(dir.path() + "/blobs").empty());
  // Stored again, it is found again.
  ASSERT_TRUE((*store)->Put(d, data).ok());
  EXPECT_TRUE((*store)->Has(d));
}

TEST(WalkKeep, LeftOutPathsAndTheDirectoriesTheyEmptyAreNotInTheTree) {
  test::TempDir dir;
  std::string with = dir.path() + "/with", without = dir.path() + "/without";
  for (const auto& root : {with, without}) {
    test::WriteFile(root + "/src/main.c", "int main(void) { return 0; }\n");
    fs::create_directories(root + "/empty");
  }
  test::WriteFile(with + "/out/bin/app", "app");
  test::WriteFile(with + "/out/log.txt", "log");
  fs::create_symlink("bin/app", with + "/out/current");
  fs::create_directories(without + "/out");  // kept: `keep` says so below
  test::WriteFile(without + "/out/log.txt", "log");

  std::vector<std::string> asked_dirs;
  cas::WalkOptions o;
  o.keep = [&](const std::string& rel, const cas::Entry& e) {
    if (e.kind == cas::Kind::kDir) {
      asked_dirs.push_back(rel);
      return false;
    }
    return rel != "out/bin/app" && rel != "out/current";
  };
  auto a = cas::BuildTree(with, o);
  ASSERT_TRUE(a.ok()) << a.status().message();
  auto b = cas::BuildTree(without, cas::WalkOptions{});
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(a->root, b->root) << "the same tree as one that never had them";
  EXPECT_EQ(a->left_out, (std::vector<std::string>{"out/bin/app", "out/current"}));
  EXPECT_EQ(a->file_count, 2);
  EXPECT_EQ(a->hashed_files, 2) << "counts the tree's files only";
  EXPECT_EQ(asked_dirs, std::vector<std::string>{"out/bin"}) << "only a directory the filter emptied is asked";
  EXPECT_EQ(a->files.count(cas::DigestOf(std::string_view("app"))), 0u) << "nothing left out is uploaded";
}

TEST(WalkKeep, InAGitCheckoutADirectoryEmptiedByKeepGoesWithoutAsking) {
  test::TempDir dir;
  test::WriteFile(dir.path() + "/src/main.c", "int main(void) { return 0; }\n");
  auto init = test::RunCommand({"/usr/bin/git", "-C", dir.path(), "init", "-q"}, std::chrono::seconds(20));
  ASSERT_EQ(init.exit_code, 0) << init.err;
  WalkOptions o;
  o.use_git = true;
  auto before = BuildTree(dir.path(), o);
  ASSERT_TRUE(before.ok()) << before.status().message();
  // Untracked, not ignored: in git's list.
  test::WriteFile(dir.path() + "/out/bin/app", "app");
  bool asked_dir = false;
  o.keep = [&](const std::string& rel, const Entry& e) {
    asked_dir |= e.kind == Kind::kDir;
    return rel != "out/bin/app";
  };
  auto after = BuildTree(dir.path(), o);
  ASSERT_TRUE(after.ok()) << after.status().message();
  EXPECT_TRUE(after->used_git);
  EXPECT_EQ(after->root, before->root) << "git would not list out/ without its file";
  EXPECT_FALSE(asked_dir);
  EXPECT_EQ(after->left_out, std::vector<std::string>{"out/bin/app"});
}

}  // namespace
}  // namespace kiln::cas
