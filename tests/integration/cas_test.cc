// CAS end to end: a real controller (blob directory + hstore nodes in a
// throwaway PostgreSQL), real workers, the kiln CLI.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "api/convert.h"
#include "cas/client.h"
#include "cas/tree_store.h"
#include "cas/walk.h"
#include "harness/farm.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

class Cas : public Farm {
 protected:
  std::unique_ptr<cas::CasClient> Client(int c = 0) {
    return std::make_unique<cas::CasClient>(Channel(c), std::chrono::seconds(30));
  }
  // Blob files visible in the controller's CAS directory.
  std::vector<std::string> Blobs() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dir_.path() + "/cas/blobs", ec))
      if (e.is_regular_file()) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  int TreeRows() { return std::stoi(test::Sql(url_, "SELECT count(*) FROM cas_trees")); }
  int JobRows() { return std::stoi(test::Sql(url_, "SELECT count(*) FROM build_jobs")); }

  cas::BuiltTree Tree(const std::string& dir) {
    auto t = cas::BuildTree(dir, {});
    EXPECT_TRUE(t.ok()) << t.status().message();
    return std::move(t).value();
  }
  cas::UploadStats Upload(const cas::BuiltTree& t) {
    auto up = Client()->UploadTree(t);
    EXPECT_TRUE(up.ok()) << up.status().message();
    return up.ok() ? *up : cas::UploadStats{};
  }
  grpc::Status SubmitTree(const cas::Digest& root, std::vector<std::string> argv, int64_t* id = nullptr,
                          std::map<std::string, std::string> req = {}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::SubmitRequest r;
    for (auto& a : argv) r.mutable_spec()->add_argv(a);
    *r.mutable_spec()->mutable_input_root() = api::ToProto(root);
    for (auto& [k, v] : req) (*r.mutable_spec()->mutable_requirements())[k] = v;
    v1::SubmitResponse resp;
    auto s = Jobs()->Submit(&ctx, r, &resp);
    if (id != nullptr) *id = resp.job().id();
    return s;
  }
  // Uploads a directory node as given (no client-side checks), claiming the
  // digest of its encoding.
  grpc::Status UploadRawNode(const cas::Directory& d, cas::Digest* digest = nullptr) {
    v1::UploadTreesRequest req;
    auto* n = req.add_nodes();
    cas::Digest dg = cas::DigestOf(d);
    *n->mutable_digest() = api::ToProto(dg);
    api::ToProto(d, n->mutable_directory());
    grpc::ClientContext ctx;
    v1::UploadTreesResponse resp;
    if (digest != nullptr) *digest = dg;
    return Client()->stub().UploadTrees(&ctx, req, &resp);
  }
  test::CommandResult Kiln(std::vector<std::string> args, const std::string& cwd) {
    std::vector<std::string> argv{test::BinPath("kiln"), "--controller", addresses_[0]};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::RunCommand(argv, 60s, {{"XDG_CACHE_HOME", dir_.path() + "/xdg"}}, cwd);
  }
  bool Ended(int64_t id) {
    auto s = Get(*Jobs(), id).status();
    return s == v1::SUCCEEDED || s == v1::FAILED || s == v1::CANCELLED || s == v1::LOST;
  }
};

TEST_F(Cas, OnlyWhatTheFarmLacksCrossesTheWire) {
  StartController();
  StartWorker(0, 1);
  std::string src = dir_.path() + "/src";
  test::WriteFile(src + "/README", "readme\n");
  test::WriteFile(src + "/lib/deep/er/x.c", "int x;\n");
  test::WriteFile(src + "/lib/y.c", "int y;\n");
  test::WriteFile(src + "/copy-of-y.c", "int y;\n");  // same content: one blob
  auto first = Upload(Tree(src));
  EXPECT_EQ(first.blobs, 3);
  EXPECT_EQ(first.nodes, 4);  // root, lib, lib/deep, lib/deep/er

  auto again = Upload(Tree(src));
  EXPECT_EQ(again.blobs, 0);
  EXPECT_EQ(again.blob_bytes, 0);
  EXPECT_EQ(again.nodes, 0);

  test::WriteFile(src + "/lib/deep/er/x.c", "int x = 42;\n");
  auto t = Tree(src);
  auto one = Upload(t);
  EXPECT_EQ(one.blobs, 1);
  EXPECT_EQ(one.blob_bytes, 12);
  EXPECT_EQ(one.nodes, 4);  // the nodes on the changed file's path

  // The worker materializes the tree and the build sees it.
  int64_t id = 0;
  auto s = SubmitTree(t.root, {"sh", "-c", "cat lib/deep/er/x.c; cat copy-of-y.c"}, &id);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(test::WaitFor([&] { return Ended(id); }, 30s));
  EXPECT_EQ(Get(*Jobs(), id).status(), v1::SUCCEEDED);
  EXPECT_EQ(Log(*Jobs(), id), "int x = 42;\nint y;\n");
}

TEST_F(Cas, AWorkerFetchesATreeOfThousandsOfSmallFiles) {
  // More small files than fit one BatchRead with the service's per-blob
  // framing counted (a worker once asked for 3 MiB of data in one call).
  StartController();
  StartWorker(0, 1);
  std::string src = dir_.path() + "/many";
  for (int i = 0; i < 2500; ++i) {
    test::WriteFile(src + "/d" + std::to_string(i % 10) + "/f" + std::to_string(i) + ".c",
                    std::to_string(i) + std::string(1500, 'x') + "\n");
  }
  auto t = Tree(src);
  Upload(t);
  int64_t id = 0;
  auto s = SubmitTree(t.root, {"sh", "-c", "cat d*/f*.c | wc -c"}, &id);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(test::WaitFor([&] { return Ended(id); }, 60s));
  auto j = Get(*Jobs(), id);
  EXPECT_EQ(j.status(), v1::SUCCEEDED) << j.result().error();
  int64_t bytes = 0;
  for (int i = 0; i < 2500; ++i) bytes += static_cast<int64_t>(std::to_string(i).size()) + 1501;
  EXPECT_EQ(Log(*Jobs(), id), std::to_string(bytes) + "\n");
}

TEST_F(Cas, RefusedInputsChangeNothing) {
  extra_conf_ = "cas_max_blob_bytes = 1MiB\n";
  SetUp();
  StartController();
  const auto blobs0 = Blobs();
  const int trees0 = TreeRows(), jobs0 = JobRows();
  auto blob = cas::DigestOf(std::string_view("content\n"));

  auto refused = [&](const cas::Directory& d, const std::string& want) {
    auto s = UploadRawNode(d);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << want;
    EXPECT_NE(s.error_message().find(want), std::string::npos) << s.error_message();
  };
  refused(cas::Directory{{{"..", cas::Kind::kFile, blob, false, ""}}}, "file name '..' is not allowed");
  refused(cas::Directory{{{"a/b", cas::Kind::kFile, blob, false, ""}}}, "contains '/'");
  refused(cas::Directory{{{std::string("a\0b", 3), cas::Kind::kFile, blob, false, ""}}}, "NUL");
  refused(cas::Directory{{{"x", cas::Kind::kFile, blob, false, ""}, {"x", cas::Kind::kFile, blob, false, ""}}},
          "x: duplicate entry");
  refused(cas::Directory{{{"etc", cas::Kind::kSymlink, {}, false, "/etc"}}}, "is absolute");

  // Bytes that do not match their digest, in a batch and in a stream.
  {
    v1::BatchUploadRequest req;
    auto* b = req.add_blobs();
    *b->mutable_digest() = api::ToProto(blob);
    b->set_data("CONTENT\n");
    v1::BatchUploadResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(Client()->stub().BatchUpload(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.statuses(0).code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
    EXPECT_NE(resp.statuses(0).message().find("does not match its digest"), std::string::npos);
  }
  {
    std::string data(300000, 'a');
    cas::Digest claimed = cas::DigestOf(std::string_view(std::string(300000, 'b')));
    grpc::ClientContext ctx;
    v1::WriteResponse resp;
    auto w = Client()->stub().Write(&ctx, &resp);
    v1::WriteRequest m;
    *m.mutable_digest() = api::ToProto(claimed);
    m.set_upload_id("mismatch");
    m.set_data(data);
    m.set_finish(true);
    w->Write(m);
    w->WritesDone();
    auto s = w->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("does not match its digest"), std::string::npos) << s.error_message();
  }
  // Over the size cap.
  {
    std::string big((1 << 20) + 1, 'z');
    v1::BatchUploadRequest req;
    auto* b = req.add_blobs();
    *b->mutable_digest() = api::ToProto(cas::DigestOf(std::string_view(big)));
    b->set_data(big);
    v1::BatchUploadResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(Client()->stub().BatchUpload(&ctx, req, &resp).ok());
    EXPECT_NE(resp.statuses(0).message().find("larger than the limit of 1048576 bytes (cas_max_blob_bytes)"),
              std::string::npos)
        << resp.statuses(0).message();
  }
  EXPECT_EQ(Blobs(), blobs0);
  EXPECT_EQ(TreeRows(), trees0);

  // Asking about a stored blob with a wrong size says "missing" and deletes nothing.
  {
    std::string other = "stored\n";
    cas::Digest od = cas::DigestOf(std::string_view(other));
    v1::BatchUploadRequest req;
    auto* b = req.add_blobs();
    *b->mutable_digest() = api::ToProto(od);
    b->set_data(other);
    v1::BatchUploadResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(Client()->stub().BatchUpload(&ctx, req, &resp).ok());
    v1::FindMissingRequest fm;
    cas::Digest wrong_size = od;
    wrong_size.size = 999;
    *fm.add_blobs() = api::ToProto(wrong_size);
    v1::FindMissingResponse fmr;
    grpc::ClientContext c2;
    ASSERT_TRUE(Client()->stub().FindMissing(&c2, fm, &fmr).ok());
    EXPECT_EQ(fmr.blobs_size(), 1);
    auto now = Blobs();
    EXPECT_NE(std::find(now.begin(), now.end(), od.hash), now.end()) << "a wrong claim deleted a stored blob";
  }
  const auto blobs1 = Blobs();

  // A tree naming a blob CAS lacks, a missing subdirectory, an escaping
  // symlink: each submit is refused, naming the path, and queues nothing.
  cas::Digest root;
  ASSERT_TRUE(UploadRawNode(cas::Directory{{{"main.c", cas::Kind::kFile, blob, false, ""}}}, &root).ok());
  auto s = SubmitTree(root, {"true"});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("file 'main.c' (" + blob.ToString() + ") is not in CAS"), std::string::npos)
      << s.error_message();
  cas::Digest missing_dir = cas::DigestOf(cas::Directory{{{"q", cas::Kind::kFile, blob, false, ""}}});
  ASSERT_TRUE(UploadRawNode(cas::Directory{{{"sub", cas::Kind::kDir, missing_dir, false, ""}}}, &root).ok());
  s = SubmitTree(root, {"true"});
  EXPECT_NE(s.error_message().find("directory 'sub' (sha256:" + missing_dir.hash + ") is not in CAS"),
            std::string::npos)
      << s.error_message();
  cas::Digest inner;
  ASSERT_TRUE(UploadRawNode(cas::Directory{{{"up", cas::Kind::kSymlink, {}, false, "../../etc/passwd"}}}, &inner).ok());
  ASSERT_TRUE(UploadRawNode(cas::Directory{{{"d", cas::Kind::kDir, inner, false, ""}}}, &root).ok());
  s = SubmitTree(root, {"true"});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("symlink 'd/up' -> '../../etc/passwd' leaves the tree"), std::string::npos)
      << s.error_message();
  // Directories nested 2,000 deep (every node stored): refused by depth.
  {
    v1::UploadTreesRequest req;
    cas::Digest child = cas::DigestOf(cas::Directory{});
    for (int i = 0; i < 2000; ++i) {
      cas::Directory d{{{"d", cas::Kind::kDir, child, false, ""}}};
      auto* n = req.add_nodes();
      child = cas::DigestOf(d);
      *n->mutable_digest() = api::ToProto(child);
      api::ToProto(d, n->mutable_directory());
    }
    grpc::ClientContext ctx;
    v1::UploadTreesResponse resp;
    ASSERT_TRUE(Client()->stub().UploadTrees(&ctx, req, &resp).ok());
    s = SubmitTree(child, {"true"});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("nested deeper than 512 levels"), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(JobRows(), jobs0);
  EXPECT_EQ(Blobs(), blobs1);

  // The CLI refuses such a tree before sending anything.
  std::string src = dir_.path() + "/bad";
  test::WriteFile(src + "/ok.c", "ok\n");
  fs::create_symlink("/etc/passwd", src + "/passwd");
  const int trees1 = TreeRows();
  auto r = Kiln({"submit", "--", "true"}, src);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("passwd: symlink target '/etc/passwd' is absolute"), std::string::npos) << r.err;
  EXPECT_EQ(Blobs(), blobs1);
  EXPECT_EQ(TreeRows(), trees1);
  EXPECT_EQ(JobRows(), jobs0);
}

TEST_F(Cas, OutputsComeBackByteForByte) {
  StartController();
  StartWorker(0, 1);
  std::string src = dir_.path() + "/proj";
  test::WriteFile(src + "/hello.c", "#include <stdio.h>\nint main(void) { puts(\"hello from the farm\"); return 0; }\n");
  test::WriteFile(src + "/build.sh",
        "set -e\nmkdir -p bin out/docs\ncc -O1 -o bin/hello hello.c\necho one > out/a.txt\n"
        "echo two > out/docs/b.txt\nln -s a.txt out/link\nsha256sum bin/hello out/a.txt out/docs/b.txt\n");
  std::string dest = dir_.path() + "/got";
  auto r = Kiln({"submit", "--output", "bin/hello", "--output", "out/", "--outputs-dir", dest, "--", "sh", "build.sh"},
                src);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("uploaded 2 files"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("kiln: outputs sha256:"), std::string::npos) << r.err;
  // The sums the build printed are the sums of what we got.
  for (const char* f : {"bin/hello", "out/a.txt", "out/docs/b.txt"}) {
    std::string sum = cas::DigestOf(std::string_view(test::ReadFile(dest + "/" + f))).hash;
    EXPECT_NE(r.out.find(sum + "  " + f), std::string::npos) << f << " differs; build printed:\n" << r.out;
  }
  EXPECT_EQ(fs::read_symlink(dest + "/out/link"), "a.txt");
  auto run = test::RunCommand({dest + "/bin/hello"}, 10s);
  EXPECT_EQ(run.out, "hello from the farm\n");

  // Later, by job id; and a resubmit of the unchanged tree sends nothing.
  auto id_line = r.err.substr(r.err.find("kiln: job ") + 10);
  std::string id = id_line.substr(0, id_line.find(' '));
  std::string dest2 = dir_.path() + "/again";
  auto o = Kiln({"outputs", id, "--dest", dest2}, src);
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(test::ReadFile(dest2 + "/bin/hello"), test::ReadFile(dest + "/bin/hello"));
  EXPECT_TRUE(fs::status(dest2 + "/bin/hello").permissions() != fs::perms::none &&
              (fs::status(dest2 + "/bin/hello").permissions() & fs::perms::owner_exec) != fs::perms::none);
  auto again = Kiln({"submit", "--detach", "--", "true"}, src);
  EXPECT_NE(again.err.find("uploaded 0 files (0 bytes"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("and 0 directory nodes"), std::string::npos) << again.err;
}

TEST_F(Cas, AMissingDeclaredOutputFailsTheJobByName) {
  StartController();
  StartWorker(0, 1);
  std::string src = dir_.path() + "/proj";
  test::WriteFile(src + "/x", "x\n");
  // (--output right before "--" must not swallow the command's own flags)
  auto r = Kiln({"submit", "--output", "dist/app", "--", "sh", "-c", "true"}, src);
  EXPECT_EQ(r.exit_code, 125) << r.err;  // failed by kiln, not by an exit code of its own
  EXPECT_NE(r.err.find("declared output 'dist/app' was not produced by the build"), std::string::npos) << r.err;
  auto none = Kiln({"outputs", "1"}, src);
  EXPECT_EQ(none.exit_code, 4);
  EXPECT_NE(none.err.find("job 1 has no outputs"), std::string::npos) << none.err;
}

TEST_F(Cas, AKilledControllerLeavesNoHalfBlobAndTheUploadResumes) {
  // The client resumes on the new controller's own address: no one needs the old one.
  StartController();
  std::string data(24 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  cas::Digest d = cas::DigestOf(std::string_view(data));
  const int64_t half = 8 << 20;
  {
    grpc::ClientContext ctx;
    v1::WriteResponse resp;
    auto w = Client()->stub().Write(&ctx, &resp);
    for (int64_t off = 0; off < half; off += 1 << 20) {
      v1::WriteRequest m;
      *m.mutable_digest() = api::ToProto(d);
      m.set_upload_id("resume-me");
      m.set_offset(off);
      m.set_data(data.substr(static_cast<size_t>(off), 1 << 20));
      ASSERT_TRUE(w->Write(m));
    }
    auto held = [&] {
      v1::QueryWriteRequest q;
      *q.mutable_digest() = api::ToProto(d);
      q.set_upload_id("resume-me");
      v1::WriteResponse qr;
      grpc::ClientContext c2;
      return Client()->stub().QueryWrite(&c2, q, &qr).ok() && qr.committed_size() == half;
    };
    ASSERT_TRUE(test::WaitFor(held, 20s));
    controllers_[0]->Signal(SIGKILL);
    controllers_[0]->Wait(5s);
    w->Finish();
  }
  EXPECT_TRUE(Blobs().empty()) << "a partial upload became visible";
  StartController();
  auto client = Client(1);
  v1::FindMissingRequest fm;
  *fm.add_blobs() = api::ToProto(d);
  v1::FindMissingResponse fmr;
  grpc::ClientContext c3;
  ASSERT_TRUE(client->stub().FindMissing(&c3, fm, &fmr).ok());
  EXPECT_EQ(fmr.blobs_size(), 1);
  // Resume where the server stopped.
  v1::QueryWriteRequest q;
  *q.mutable_digest() = api::ToProto(d);
  q.set_upload_id("resume-me");
  v1::WriteResponse qr;
  grpc::ClientContext c4;
  ASSERT_TRUE(client->stub().QueryWrite(&c4, q, &qr).ok());
  ASSERT_EQ(qr.committed_size(), half);
  grpc::ClientContext c5;
  v1::WriteResponse resp;
  auto w = client->stub().Write(&c5, &resp);
  for (int64_t off = half; off < static_cast<int64_t>(data.size()); off += 1 << 20) {
    v1::WriteRequest m;
    *m.mutable_digest() = api::ToProto(d);
    m.set_upload_id("resume-me");
    m.set_offset(off);
    m.set_data(data.substr(static_cast<size_t>(off), 1 << 20));
    m.set_finish(off + (1 << 20) >= static_cast<int64_t>(data.size()));
    ASSERT_TRUE(w->Write(m));
  }
  w->WritesDone();
  auto s = w->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(resp.complete());
  EXPECT_EQ(Blobs(), std::vector<std::string>{d.hash});
  std::string fetched = dir_.path() + "/fetched";
  ASSERT_TRUE(client->FetchBlobs({d}, [&](const cas::Digest&) { return fetched; }).ok());
  EXPECT_TRUE(test::ReadFile(fetched) == data);
}

// The controller keeps the tree nodes it read or stored in memory (a
// submit reads its whole tree twice: to check it and to hand it to the
// worker). What it answers from memory is what the database holds, also
// for a tree that shares only part of its nodes with those it knows; a
// node it collected is missing to every later read and ask.
TEST_F(Cas, TreeNodesKnownInMemoryAnswerLikeTheDatabase) {
  extra_conf_ = "cas_gc_interval = 1h\n";  // this test's store is the only collector
  SetUp();
  StartController();  // the schema
  std::string src = dir_.path() + "/src";
  test::WriteFile(src + "/src/main.c", "main\n");
  test::WriteFile(src + "/src/lib/util.c", "util\n");
  test::WriteFile(src + "/doc/README", "readme\n");
  auto ta = Tree(src);
  test::WriteFile(src + "/src/lib/util.c", "util 2\n");
  auto tb = Tree(src);  // doc/ is shared; the root, src/ and src/lib/ are new
  auto nodes = [](const cas::BuiltTree& t) {
    return std::vector<std::pair<cas::Digest, cas::Directory>>(t.nodes.begin(), t.nodes.end());
  };
  auto describe = [](const cas::TreeStore::Reach& r) {
    std::string out;
    for (const auto& [d, dir] : r.nodes) out += d.ToString() + " holds " + cas::DigestOf(dir).ToString() + "\n";
    for (const auto& d : r.missing) out += "missing " + d.hash + "\n";
    return out;
  };
  cas::TreeStore memory(url_, 1), other(url_, 1);
  ASSERT_TRUE(memory.Insert(nodes(ta)).ok());
  ASSERT_TRUE(other.Insert(nodes(tb)).ok());  // to `memory`, tb's new nodes are only in the database
  for (const auto* t : {&ta, &tb}) {
    for (int round = 0; round < 2; ++round) {  // the second from what the first read
      auto m = memory.Reachable(t->root);
      cas::TreeStore fresh(url_, 1);
      auto f = fresh.Reachable(t->root);
      ASSERT_TRUE(m.ok() && f.ok());
      EXPECT_EQ(m->nodes.size(), 4u);
      EXPECT_TRUE(m->missing.empty());
      EXPECT_EQ(describe(*m), describe(*f));
      for (const auto& [d, dir] : m->nodes) EXPECT_EQ(cas::DigestOf(dir), d);
    }
  }
  test::Sql(url_, "UPDATE cas_trees SET last_used = now() - interval '2 days'");
  auto removed = memory.DeleteUnreachable({}, 86400);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 7);  // 4 + 4, doc/ shared
  auto gone = memory.Reachable(ta.root);
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->nodes.empty());
  ASSERT_EQ(gone->missing.size(), 1u);
  EXPECT_EQ(gone->missing[0].hash, ta.root.hash);
  auto asked = memory.FindMissing({ta.root, tb.root});
  ASSERT_TRUE(asked.ok());
  EXPECT_EQ(asked->size(), 2u);
}

TEST_F(Cas, CollectorKeepsWhatLiveJobsNeedAndRemovesTheRest) {
  extra_conf_ = "cas_gc_interval = 200ms\ncas_min_age = 2s\ncas_max_age = 2s\n";
  SetUp();
  StartController();
  std::string a = dir_.path() + "/a", b = dir_.path() + "/b";
  test::WriteFile(a + "/sub/kept.c", "kept\n");
  test::WriteFile(b + "/sub/dropped.c", "dropped\n");
  auto ta = Tree(a), tb = Tree(b);
  Upload(ta);
  Upload(tb);
  // A job that stays queued (no worker is aarch64) keeps tree a alive.
  int64_t id = 0;
  auto s = SubmitTree(ta.root, {"true"}, &id, {{"arch", "aarch64"}});
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::string kept = cas::DigestOf(std::string_view("kept\n")).hash;
  std::string dropped = cas::DigestOf(std::string_view("dropped\n")).hash;
  ASSERT_TRUE(test::WaitFor([&] {
    auto bl = Blobs();
    return std::find(bl.begin(), bl.end(), dropped) == bl.end();
  }, 20s)) << "the unreferenced blob was not collected";
  auto bl = Blobs();
  EXPECT_NE(std::find(bl.begin(), bl.end(), kept), bl.end()) << "a live job's input blob was collected";
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM cas_trees WHERE digest = '" + ta.root.hash + "'"), "1");
  EXPECT_TRUE(test::WaitFor(
      [&] { return test::Sql(url_, "SELECT count(*) FROM cas_trees WHERE digest = '" + tb.root.hash + "'") == "0"; },
      10s));
  // Once the job ended, its tree goes too.
  grpc::ClientContext ctx;
  v1::CancelJobRequest cr;
  cr.set_job_id(id);
  v1::Job j;
  ASSERT_TRUE(Jobs()->CancelJob(&ctx, cr, &j).ok());
  EXPECT_TRUE(test::WaitFor([&] { return Blobs().empty(); }, 20s));
}

TEST_F(Cas, ABuildWritingThroughAnInputCannotSpoilTheWorkersCache) {
  StartController();
  StartWorker(0, 1);
  std::string src = dir_.path() + "/src";
  test::WriteFile(src + "/a.txt", "original\n");
  auto t = Tree(src);
  Upload(t);
  int64_t first = 0, second = 0;
  // A plain job runs as root: nothing but the checkout's overlay stands
  // between its write and the cache's file.
  ASSERT_TRUE(SubmitTree(t.root, {"sh", "-c", "stat -c %a a.txt; echo tampered >> a.txt; cat a.txt"}, &first).ok());
  ASSERT_TRUE(test::WaitFor([&] { return Ended(first); }, 30s));
  EXPECT_EQ(Log(*Jobs(), first), "644\noriginal\ntampered\n");
  ASSERT_TRUE(SubmitTree(t.root, {"cat", "a.txt"}, &second).ok());
  ASSERT_TRUE(test::WaitFor([&] { return Ended(second); }, 30s));
  EXPECT_EQ(Log(*Jobs(), second), "original\n");
}

TEST_F(Cas, OutputsOverTheWorkersCapFailTheJob) {
  StartController();
  std::string conf = dir_.path() + "/worker.conf";
  std::ofstream(conf) << "max_output_bytes = 1MiB\n";
  StartWorker(0, 1, {"--config", conf});
  std::string src = dir_.path() + "/proj";
  test::WriteFile(src + "/x", "x\n");
  auto r = Kiln({"submit", "--output", "big", "--", "sh", "-c", "head -c 2000000 /dev/zero > big"}, src);
  EXPECT_EQ(r.exit_code, 125) << r.err;
  EXPECT_NE(r.err.find("over this worker's limit of 1048576 (max_output_bytes)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(src + "/big"));
}

TEST_F(Cas, TheWorkersCacheStaysUnderItsCap) {
  StartController();
  std::string conf = dir_.path() + "/worker.conf";
  std::ofstream(conf) << "cache_max_bytes = 1MiB\n";
  StartWorker(0, 1, {"--config", conf});
  std::string cache = dir_.path() + "/w0/cas";
  auto cache_bytes = [&] {
    int64_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(cache))
      if (e.is_regular_file()) n += static_cast<int64_t>(e.file_size());
    return n;
  };
  std::vector<cas::Digest> roots;
  for (char c : {'a', 'b', 'c'}) {
    std::string src = dir_.path() + "/src-" + c;
    test::WriteFile(src + "/big", std::string(700 << 10, c));
    auto t = Tree(src);
    Upload(t);
    roots.push_back(t.root);
  }
  for (size_t i = 0; i < roots.size(); ++i) {
    int64_t id = 0;
    ASSERT_TRUE(SubmitTree(roots[i], {"sh", "-c", "head -c 3 big"}, &id).ok());
    ASSERT_TRUE(test::WaitFor([&] { return Ended(id); }, 30s));
    EXPECT_EQ(Log(*Jobs(), id), std::string(3, static_cast<char>('a' + i)));
    EXPECT_LE(cache_bytes(), 1 << 20) << "after job " << i;
  }
}

}  // namespace
}  // namespace kiln
