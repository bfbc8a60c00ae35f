// Trust, tried as an attacker on the same network would: real TLS on
// loopback, real enrolment, real tokens; every check through what a client
// or a worker sees (status codes, messages, the CLI's exit codes).

#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "api/channel.h"
#include "api/convert.h"
#include "auth/x509.h"
#include "cas/digest.h"
#include "cas/tree.h"
#include "harness/container_farm.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln {
namespace {

// Calls `method` (a full "/pkg.Service/Method" name) with an empty request
// over a generic stream, whatever its kind; returns the call's status.
grpc::Status CallEmpty(const std::shared_ptr<grpc::Channel>& channel, const std::string& method) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  grpc::CompletionQueue cq;
  void* tag = nullptr;
  bool ok = false;
  auto call = stub.PrepareCall(&ctx, method, &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer empty;
  grpc::Slice nothing("", 0);
  empty = grpc::ByteBuffer(&nothing, 1);
  call->Write(empty, reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  call->WritesDone(reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer got;
  call->Read(&got, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  grpc::Status st;
  call->Finish(&st, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return st;
}

std::vector<std::string> Methods(const std::string& service) {
  const auto* s = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
  EXPECT_NE(s, nullptr) << service;
  std::vector<std::string> out;
  for (int i = 0; s && i < s->method_count(); ++i) out.push_back("/" + service + "/" + s->method(i)->name());
  return out;
}

class Trust : public ContainerFarm {
 protected:
  // A channel as a worker holding this key and certificate (no token).
  std::shared_ptr<grpc::Channel> AsWorker(const std::string& key_pem, const std::string& cert_pem) {
    api::ChannelOptions o;
    o.address = addresses_[0];
    o.ca_pem = test::ReadFile(tls_ + "/ca.crt");
    o.key_pem = key_pem;
    o.cert_pem = cert_pem;
    return api::MakeChannel(o, grpc::ChannelArguments());
  }
  // Worker n's own key and certificate, as enrolment left them.
  std::pair<std::string, std::string> WorkerCert(int n) {
    std::string d = dir_.path() + "/w" + std::to_string(n) + "/tls";
    return {test::ReadFile(d + "/worker.key"), test::ReadFile(d + "/worker.crt")};
  }
  std::string WorkerId(int n) {
    auto info = auth::InspectCert(WorkerCert(n).second);
    EXPECT_TRUE(info.ok());
    return info.ok() ? info->common_name : "";
  }
  // Registers on a WorkerService stream as `claimed`; returns the status the controller ends it with.
  grpc::Status Register(const std::shared_ptr<grpc::Channel>& ch, const std::string& claimed) {
    auto stub = v1::WorkerService::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    auto stream = stub->Connect(&ctx);
    v1::WorkerMessage reg;
    auto* r = reg.mutable_register_();
    r->set_worker_id(claimed);
    r->set_hostname("h");
    r->set_arch("x86_64");
    r->set_cluster("default");
    r->set_slots(1);
    stream->Write(reg);
    v1::ControllerMessage m;
    if (stream->Read(&m) && m.has_registered()) {
      ctx.TryCancel();
      return grpc::Status::OK;
    }
    return stream->Finish();
  }
};

TEST_F(Trust, EveryClientCallNeedsATokenAndEveryWorkerCallACertificate) {
  StartController();
  api::ChannelOptions o;
  o.address = addresses_[0];
  o.ca_pem = test::ReadFile(tls_ + "/ca.crt");
  auto anonymous = api::MakeChannel(o, grpc::ChannelArguments());
  int checked = 0;
  for (const char* service : {"kiln.v1.JobService", "kiln.v1.AdminService", "kiln.v1.CasService",
                              "kiln.v1.ImageService", "kiln.v1.CacheService", "kiln.v1.WorkerService"}) {
    for (const auto& m : Methods(service)) {
      auto st = CallEmpty(anonymous, m);
      EXPECT_EQ(st.error_code(), grpc::UNAUTHENTICATED) << m << ": " << st.error_message();
      ++checked;
    }
  }
  EXPECT_GT(checked, 40);
  // An API token, even an admin's, is not a worker.
  for (const auto& m : Methods("kiln.v1.WorkerService")) {
    auto st = CallEmpty(Channel(), m);
    EXPECT_EQ(st.error_code(), grpc::UNAUTHENTICATED) << m << ": " << st.error_message();
  }
  // Enrolment is the one call without credentials, and it wants a join token.
  auto st = CallEmpty(anonymous, "/kiln.v1.EnrollService/Enroll");
  EXPECT_EQ(st.error_code(), grpc::UNAUTHENTICATED) << st.error_message();
  // Plaintext is not served at all.
  o.insecure = true;
  EXPECT_FALSE(CallEmpty(api::MakeChannel(o, grpc::ChannelArguments()), "/kiln.v1.JobService/ListJobs").ok());
}

TEST_F(Trust, ATokenActsOnlyInItsProjectsAndRole) {
  StartController();
  StartWorker(0, 2);
  ASSERT_EQ(Kiln({"projects", "create", "b"}).exit_code, 0);
  ASSERT_EQ(Kiln({"clusters", "map", "default", "b"}).exit_code, 0);
  auto theirs = Kiln({"submit", "--project", "b", "--no-input", "--", "echo", "secret-of-b"});
  ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
  auto list = Kiln({"list", "--json"});
  std::string b_job = list.out.substr(list.out.find("\"id\": \"") + 7);
  b_job = b_job.substr(0, b_job.find('"'));

  // kiln tokens create, as an admin does; the CLI reads it from KILN_TOKEN_FILE.
  auto made = Kiln({"tokens", "create", "--role", "read", "--project", "default"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string read_file = dir_.path() + "/read.token";
  test::WriteFile(read_file, made.out);
  auto as_reader = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{test::BinPath("kiln"), "--controller", addresses_[0]};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::RunCommand(argv, 60s, {{"KILN_TOKEN_FILE", read_file}, {"XDG_CACHE_HOME", dir_.path() + "/xdg"}});
  };
  auto denied = as_reader({"submit", "--no-input", "--", "true"});
  EXPECT_EQ(denied.exit_code, 6) << denied.err;
  EXPECT_NE(denied.err.find("needs a submit (or stronger) token for project default"), std::string::npos) << denied.err;
  auto log = as_reader({"logs", b_job});
  EXPECT_EQ(log.exit_code, 6) << log.err;
  EXPECT_EQ(log.out.find("secret-of-b"), std::string::npos);
  auto status = as_reader({"status", b_job});
  EXPECT_EQ(status.exit_code, 6) << status.err;
  auto mine = as_reader({"list"});
  EXPECT_EQ(mine.exit_code, 0) << mine.err;
  EXPECT_EQ(mine.out.find(" b "), std::string::npos) << "no job of project b is listed:\n" << mine.out;
  auto who = as_reader({"whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.err;
  EXPECT_NE(who.out.find("read, projects default"), std::string::npos) << who.out;
  auto admin_only = as_reader({"tokens", "list"});
  EXPECT_EQ(admin_only.exit_code, 6) << admin_only.err;

  // kiln tokens revoke: refused from the next call on.
  std::string id = made.out.substr(5, 12);
  ASSERT_EQ(Kiln({"tokens", "revoke", id}).exit_code, 0);
  auto revoked = as_reader({"list"});
  EXPECT_EQ(revoked.exit_code, 6) << revoked.err;
  EXPECT_NE(revoked.err.find("revoked"), std::string::npos) << revoked.err;
}

TEST_F(Trust, AWorkerEnrolsOnceAndIsItsCertificate) {
  StartController(UnixAddress("c0"));
  StartWorker(0, 1);
  const std::string w0 = WorkerId(0);
  EXPECT_FALSE(w0.empty());
  // Its join token is spent: a second worker cannot enrol with it.
  std::string spent = dir_.path() + "/worker0.join";
  auto again = test::RunCommand({test::BinPath("kiln-worker"), "--controller", addresses_[0], "--work-dir",
                                 dir_.path() + "/w-spent", "--set", "ca_file=" + tls_ + "/ca.crt", "--set",
                                 "join_token_file=" + spent},
                                30s);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("already used"), std::string::npos) << again.err;
  // Without a join token or certificate a worker does not start, and says what to do.
  auto none = test::RunCommand({test::BinPath("kiln-worker"), "--controller", addresses_[0], "--work-dir",
                                dir_.path() + "/w-none", "--set", "ca_file=" + tls_ + "/ca.crt"},
                               30s);
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.err.find("kiln workers join-token"), std::string::npos) << none.err;

  // A certificate of another CA does not get past the handshake.
  auto other_ca = auth::CreateCa("someone else's CA", 30);
  ASSERT_TRUE(other_ca.ok());
  auto csr = auth::NewKeyAndCsr("intruder");
  ASSERT_TRUE(csr.ok());
  auto foreign = auth::SignWorkerCsr(*other_ca, csr->csr_pem, w0, 30);
  ASSERT_TRUE(foreign.ok());
  EXPECT_FALSE(Register(AsWorker(csr->key_pem, *foreign), w0).ok());
  // One the farm's CA signed but never issued to a worker (a stolen CA key
  // would do this) is not in the farm's records: refused.
  auth::KeyPair ca{test::ReadFile(tls_ + "/ca.key"), test::ReadFile(tls_ + "/ca.crt")};
  auto unrecorded = auth::SignWorkerCsr(ca, csr->csr_pem, w0, 30);
  ASSERT_TRUE(unrecorded.ok());
  auto st = Register(AsWorker(csr->key_pem, *unrecorded), w0);
  EXPECT_EQ(st.error_code(), grpc::UNAUTHENTICATED) << st.error_message();
  // Its own certificate does not let it register as another worker.
  auto [key, cert] = WorkerCert(0);
  st = Register(AsWorker(key, cert), "someone-else");
  EXPECT_EQ(st.error_code(), grpc::PERMISSION_DENIED) << st.error_message();
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM workers WHERE id = 'someone-else'"), "0");

  // Enrolment survives a controller restart: the worker comes back with its
  // certificate and no join token.
  workers_[0]->Signal(SIGKILL);
  workers_[0]->Wait(10s);
  controllers_[0]->Signal(SIGTERM);
  controllers_[0]->Wait(20s);
  RestartController(0);
  StartWorker(0, 1, {"--set", "join_token_file=" + dir_.path() + "/no-such-file"}, dir_.path() + "/w0");
  EXPECT_EQ(WorkerId(0), w0);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM workers WHERE state = 'connected' AND id = '" + w0 + "'"), "1");
}

TEST_F(Trust, AWorkerActsOnlyOnItsOwnJobsAndARevokedOneIsCutOff) {
  StartController();
  StartWorker(0, 1, {"--label", "pool=a"});
  StartWorker(0, 1, {"--label", "pool=b"});
  const std::string w0 = WorkerId(0), w1 = WorkerId(1);
  std::string image = Busybox();
  auto sub = Kiln({"submit", "--detach", "--no-input", "--image", image, "--require", "pool=b", "--", "sleep", "60"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string job = sub.out.substr(0, sub.out.find('\n'));
  ASSERT_TRUE(test::WaitFor(
      [&] { return test::Sql(url_, "SELECT status FROM build_jobs WHERE id = " + job) == "running"; }, 60s));

  // Worker 0 asks the compile cache about worker 1's job, and stores into it: refused.
  auto [key0, cert0] = WorkerCert(0);
  auto stub0 = v1::WorkerService::NewStub(AsWorker(key0, cert0));
  v1::LookupCompileRequest look;
  look.set_job_id(std::stoll(job));
  look.set_attempt(1);
  look.set_key(std::string(64, 'a'));
  v1::LookupCompileResponse found;
  grpc::ClientContext c1;
  auto st = stub0->LookupCompile(&c1, look, &found);
  EXPECT_EQ(st.error_code(), grpc::FAILED_PRECONDITION) << st.error_message();
  EXPECT_NE(st.error_message().find("on worker " + w0), std::string::npos) << st.error_message();
  v1::StoreCompileRequest store;
  store.set_job_id(std::stoll(job));
  store.set_attempt(1);
  store.set_key(std::string(64, 'a'));
  store.set_manifest_only(true);
  store.mutable_result()->set_key(std::string(64, 'b'));
  v1::StoreCompileResponse stored;
  grpc::ClientContext c2;
  st = stub0->StoreCompile(&c2, store, &stored);
  EXPECT_EQ(st.error_code(), grpc::FAILED_PRECONDITION) << st.error_message();
  // Worker 1, which runs it, is answered.
  auto [key1, cert1] = WorkerCert(1);
  grpc::ClientContext c3;
  st = v1::WorkerService::NewStub(AsWorker(key1, cert1))->LookupCompile(&c3, look, &found);
  EXPECT_TRUE(st.ok()) << st.error_message();

  // kiln workers revoke: worker 1 is cut off at once, its job goes back in
  // line (and runs on worker 0 once its pool allows), and it stops.
  auto revoke = Kiln({"workers", "revoke", w1});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  EXPECT_TRUE(test::WaitFor(
      [&] { return test::Sql(url_, "SELECT status FROM build_jobs WHERE id = " + job) == "queued"; }, 20s))
      << "the revoked worker's job is requeued";
  EXPECT_EQ(workers_[1]->Wait(20s), 3) << "the revoked worker stops";
  st = Register(AsWorker(key1, cert1), w1);
  EXPECT_EQ(st.error_code(), grpc::UNAUTHENTICATED) << st.error_message();
  EXPECT_NE(st.error_message().find("revoked"), std::string::npos) << st.error_message();
  auto listed = Kiln({"workers", "--all"});
  EXPECT_NE(listed.out.find(w1), std::string::npos);
  ASSERT_EQ(Kiln({"cancel", job}).exit_code, 0);
}

// The operator's commands on the controller's host take the daemon's
// options after the subcommand, as documented.
TEST_F(Trust, ControllerSubcommandsBootstrapTheFarm) {
  auto migrate = test::RunCommand({test::BinPath("kiln-controller"), "migrate", "--database-url", url_}, 60s);
  EXPECT_EQ(migrate.exit_code, 0) << migrate.err;
  auto again = test::RunCommand({test::BinPath("kiln-controller"), "migrate", "--database-url", url_}, 60s);
  EXPECT_NE(again.out.find("schema is up to date"), std::string::npos) << again.out << again.err;
  // certs server: a new server certificate from the CA in the directory.
  const std::string before = test::ReadFile(tls_ + "/server.crt");
  auto server = test::RunCommand(
      {test::BinPath("kiln-controller"), "certs", "server", "--dir", tls_, "--host", "ctl.example.org"}, 30s);
  ASSERT_EQ(server.exit_code, 0) << server.err;
  auto info = auth::InspectCert(test::ReadFile(tls_ + "/server.crt"));
  ASSERT_TRUE(info.ok());
  EXPECT_NE(test::ReadFile(tls_ + "/server.crt"), before);
  EXPECT_NE(std::find(info->dns_sans.begin(), info->dns_sans.end(), "ctl.example.org"), info->dns_sans.end());
  EXPECT_TRUE(auth::VerifyCert(test::ReadFile(tls_ + "/server.crt"), test::ReadFile(tls_ + "/ca.crt"),
                               auth::CertPurpose::kServer)
                  .ok());
  EXPECT_EQ(std::filesystem::status(tls_ + "/server.key").permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);
  // The controller serves with it; a read token made on the host works.
  StartController();
  const std::string reader = NewToken("read", "default");
  v1::ListJobsResponse listed;
  grpc::ClientContext ctx;
  EXPECT_TRUE(v1::JobService::NewStub(Channel(0, reader))->ListJobs(&ctx, v1::ListJobsRequest(), &listed).ok());
  // certs init refuses to replace the farm's CA.
  auto init = test::RunCommand({test::BinPath("kiln-controller"), "certs", "init", "--dir", tls_}, 30s);
  EXPECT_NE(init.exit_code, 0);
  EXPECT_NE(init.err.find("already exists"), std::string::npos) << init.err;
}

// The CAS answers a token only about its projects' content: another
// project's blob reads as missing until the caller uploads it itself.
TEST_F(Trust, ATokenSeesOnlyItsProjectsContentAndAWorkerOnlyItsJobs) {
  StartController();
  StartWorker(0, 1);
  ASSERT_EQ(Kiln({"projects", "create", "b"}).exit_code, 0);
  ASSERT_EQ(Kiln({"clusters", "map", "default", "b"}).exit_code, 0);
  const std::string ta = NewToken("submit", "default"), tb = NewToken("submit", "b");
  auto cas_a = v1::CasService::NewStub(Channel(0, ta));
  auto cas_b = v1::CasService::NewStub(Channel(0, tb));
  auto ctx = [] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + 20s);
    return c;
  };
  const std::string secret = "the secret of project default\n";
  const cas::Digest d = cas::DigestOf(std::string_view(secret));
  v1::Digest pd;
  pd.set_hash(d.hash);
  pd.set_size(d.size);
  auto upload = [&](v1::CasService::Stub& stub, const std::string& data) {
    v1::BatchUploadRequest up;
    auto* b = up.add_blobs();
    *b->mutable_digest() = pd;
    b->set_data(data);
    v1::BatchUploadResponse r;
    EXPECT_TRUE(stub.BatchUpload(ctx().get(), up, &r).ok());
    return r.statuses(0).code();
  };
  auto missing = [&](v1::CasService::Stub& stub) {
    v1::FindMissingRequest fm;
    *fm.add_blobs() = pd;
    v1::FindMissingResponse r;
    EXPECT_TRUE(stub.FindMissing(ctx().get(), fm, &r).ok());
    return r.blobs_size() == 1;
  };
  auto read = [&](v1::CasService::Stub& stub) {
    v1::BatchReadRequest br;
    *br.add_digests() = pd;
    v1::BatchReadResponse r;
    EXPECT_TRUE(stub.BatchRead(ctx().get(), br, &r).ok());
    return r.statuses(0).code();
  };
  ASSERT_EQ(upload(*cas_a, secret), 0);
  EXPECT_FALSE(missing(*cas_a));
  EXPECT_EQ(read(*cas_a), 0);
  EXPECT_TRUE(missing(*cas_b)) << "another project's blob reads as missing";
  EXPECT_EQ(read(*cas_b), grpc::NOT_FOUND) << "and cannot be read";
  v1::ReadRequest rr;
  *rr.mutable_digest() = pd;
  auto rctx = ctx();
  auto reader = cas_b->Read(rctx.get(), rr);
  v1::ReadResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_EQ(reader->Finish().error_code(), grpc::NOT_FOUND);
  // Claiming it without the bytes does not let it in; sending the bytes does.
  EXPECT_EQ(upload(*cas_b, "not the secret, same length.\n"), grpc::INVALID_ARGUMENT);
  EXPECT_TRUE(missing(*cas_b));
  EXPECT_EQ(upload(*cas_b, secret), 0);
  EXPECT_FALSE(missing(*cas_b));
  EXPECT_EQ(read(*cas_b), 0);

  // A tree of project default's content cannot be submitted by project b.
  std::string only_a = "only default has this\n";
  cas::Digest oa = cas::DigestOf(std::string_view(only_a));
  {
    v1::BatchUploadRequest up;
    auto* b = up.add_blobs();
    b->mutable_digest()->set_hash(oa.hash);
    b->mutable_digest()->set_size(oa.size);
    b->set_data(only_a);
    v1::BatchUploadResponse r;
    ASSERT_TRUE(cas_a->BatchUpload(ctx().get(), up, &r).ok());
    ASSERT_EQ(r.statuses(0).code(), 0);
  }
  cas::Directory dir;
  dir.entries.push_back({"a.txt", cas::Kind::kFile, oa, false, ""});
  const cas::Digest root = cas::DigestOf(dir);
  for (auto* stub : {cas_a.get(), cas_b.get()}) {
    v1::UploadTreesRequest ut;
    auto* n = ut.add_nodes();
    *n->mutable_digest() = api::ToProto(root);
    api::ToProto(dir, n->mutable_directory());
    v1::UploadTreesResponse r;
    ASSERT_TRUE(stub->UploadTrees(ctx().get(), ut, &r).ok());
  }
  auto jobs_b = v1::JobService::NewStub(Channel(0, tb));
  v1::SubmitRequest sub;
  sub.set_project("b");
  sub.mutable_spec()->add_argv("cat");
  sub.mutable_spec()->add_argv("a.txt");
  *sub.mutable_spec()->mutable_input_root() = api::ToProto(root);
  v1::SubmitResponse resp;
  auto st = jobs_b->Submit(ctx().get(), sub, &resp);
  EXPECT_EQ(st.error_code(), grpc::FAILED_PRECONDITION) << st.error_message();

  // The whole flow with a project token: its tree goes up, the worker
  // reads it, the outputs come back to it and to nobody else.
  std::string src = dir_.path() + "/src";
  std::filesystem::create_directories(src);
  test::WriteFile(src + "/in.txt", "input of default\n");
  std::string ta_file = dir_.path() + "/ta.token";
  test::WriteFile(ta_file, ta + "\n");
  auto run = test::RunCommand({test::BinPath("kiln"), "--controller", addresses_[0], "submit", "--input", src,
                               "--no-gitignore", "--output", "out.txt", "--", "sh", "-c", "cat in.txt > out.txt"},
                              60s, {{"KILN_TOKEN_FILE", ta_file}, {"XDG_CACHE_HOME", dir_.path() + "/xdg"}}, src);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(test::ReadFile(src + "/out.txt"), "input of default\n") << run.err;
  cas::Digest out = cas::DigestOf(std::string_view("input of default\n"));
  pd.set_hash(out.hash);
  pd.set_size(out.size);
  EXPECT_EQ(read(*cas_a), 0) << "a job's outputs are its project's";
  EXPECT_EQ(read(*cas_b), grpc::NOT_FOUND);

  // A worker reads what it was assigned, not all of its jobs' projects:
  // with no job, nothing of them.
  auto [key, cert] = WorkerCert(0);
  auto cas_w = v1::CasService::NewStub(AsWorker(key, cert));
  auto read_as_worker = [&](const cas::Digest& blob) {
    pd.set_hash(blob.hash);
    pd.set_size(blob.size);
    return read(*cas_w);
  };
  EXPECT_EQ(read_as_worker(oa), grpc::NOT_FOUND);
  // While it runs a job of project default, the job's input tree, and no
  // other content of that project.
  std::string held = dir_.path() + "/held";
  std::filesystem::create_directories(held);
  test::WriteFile(held + "/held.txt", "the input of the job the worker holds\n");
  const cas::Digest in = cas::DigestOf(std::string_view("the input of the job the worker holds\n"));
  auto hold = test::RunCommand({test::BinPath("kiln"), "--controller", addresses_[0], "submit", "--detach", "--input",
                                held, "--no-gitignore", "--", "sleep", "60"},
                               60s, {{"KILN_TOKEN_FILE", ta_file}, {"XDG_CACHE_HOME", dir_.path() + "/xdg"}}, held);
  ASSERT_EQ(hold.exit_code, 0) << hold.err;
  const std::string job = hold.out.substr(0, hold.out.find('\n'));
  ASSERT_TRUE(test::WaitFor(
      [&] { return test::Sql(url_, "SELECT status FROM build_jobs WHERE id = " + job) == "running"; }, 60s));
  EXPECT_EQ(read_as_worker(in), 0) << "its job's input";
  EXPECT_EQ(read_as_worker(oa), grpc::NOT_FOUND) << "content of the job's project that the job was not given";
  EXPECT_EQ(read_as_worker(out), grpc::NOT_FOUND) << "another job's output";
  ASSERT_EQ(Kiln({"cancel", job}).exit_code, 0);
  ASSERT_TRUE(test::WaitFor(
      [&] { return test::Sql(url_, "SELECT status FROM build_jobs WHERE id = " + job) == "cancelled"; }, 60s));
  EXPECT_EQ(read_as_worker(in), grpc::NOT_FOUND) << "once the job has ended";
}

}  // namespace
}  // namespace kiln
