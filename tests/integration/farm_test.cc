// The farm as operators run it: kiln-controller and kiln-worker processes,
// gRPC on loopback, a real PostgreSQL. Also the kiln CLI end to end.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "harness/farm.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

TEST_F(Farm, ThreeHundredJobsOnTwoWorkersSucceedExactlyOnce) {
  StartController();
  StartWorker(0, 4);
  StartWorker(0, 4);
  auto jobs = Jobs();
  std::vector<int64_t> ids;
  for (int i = 0; i < 300; ++i) ids.push_back(Submit(*jobs, {"sh", "-c", "echo job $KILN_JOB_ID"}));
  ASSERT_TRUE(AllEnded(120s));
  EXPECT_EQ(Count("status = 'succeeded' AND attempt = 1"), 300)
      << test::Sql(url_, "SELECT string_agg(id || ' ' || status || ' attempt ' || attempt || ' ' || coalesce(result::text, ''), '; ')"
                         " FROM build_jobs WHERE NOT (status = 'succeeded' AND attempt = 1)");
  EXPECT_EQ(std::stoi(test::Sql(url_, "SELECT count(DISTINCT worker_id) FROM build_jobs")), 2);
  for (int64_t id : {ids.front(), ids[150], ids.back()}) {
    EXPECT_EQ(Log(*jobs, id), "job " + std::to_string(id) + "\n");
  }
}

TEST_F(Farm, JobsOfAKilledWorkerRunAgainElsewhere) {
  StartController();
  auto& victim = StartWorker(0, 3);
  auto jobs = Jobs();
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Submit(*jobs, {"sleep", "1"}));
  ASSERT_TRUE(test::WaitFor([&] { return Count("status = 'running'") == 3; }, 20s));
  StartWorker(0, 3);
  victim.Signal(SIGKILL);
  victim.Wait(5s);
  // Requeued on the dropped stream after the reconnect grace (here the lease, 3 s), run by the survivor.
  ASSERT_TRUE(AllEnded(30s));
  EXPECT_EQ(Count("status = 'succeeded'"), 3);
  EXPECT_EQ(Count("attempt = 2"), 3);
}

TEST_F(Farm, CancelStopsARunningJobAndItsProcessGroup) {
  StartController();
  StartWorker(0, 1);
  auto jobs = Jobs();
  std::string pidfile = dir_.path() + "/child.pid";
  int64_t id = Submit(*jobs, {"sh", "-c", "sleep 60 & echo $! > " + pidfile + "; wait"});
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, id).status() == v1::RUNNING && std::ifstream(pidfile).good(); }, 20s));
  pid_t child = 0;
  ASSERT_TRUE(test::WaitFor([&] { return static_cast<bool>(std::ifstream(pidfile) >> child); }, 5s));
  grpc::ClientContext ctx;
  v1::CancelJobRequest r;
  r.set_job_id(id);
  v1::Job j;
  ASSERT_TRUE(jobs->CancelJob(&ctx, r, &j).ok());
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, id).status() == v1::CANCELLED; }, 10s));
  EXPECT_TRUE(test::WaitFor([&] { return kill(child, 0) != 0; }, 5s)) << "background child survived the cancel";
}

TEST_F(Farm, ControllerRestartMidRunLosesNothing) {
  StartController(UnixAddress("controller"));
  StartWorker(0, 2);
  auto jobs = Jobs();
  for (int i = 0; i < 30; ++i) Submit(*jobs, {"sleep", "0.1"});
  ASSERT_TRUE(test::WaitFor([&] { return Count("status = 'succeeded'") >= 5; }, 30s));
  controllers_[0]->Signal(SIGKILL);
  ASSERT_NE(controllers_[0]->Wait(5s), -1);
  RestartController(0);
  ASSERT_TRUE(AllEnded(60s));
  EXPECT_EQ(Count("status = 'succeeded'"), 30);
}

TEST_F(Farm, GracefulControllerRestartLeavesRunningJobsWithTheirWorker) {
  StartController(UnixAddress("controller"));
  StartWorker(0, 1);
  auto jobs = Jobs();
  std::string gate = dir_.path() + "/gate";
  int64_t id = Submit(*jobs, {"sh", "-c", "while [ ! -e " + gate + " ]; do sleep 0.05; done"});
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, id).status() == v1::RUNNING; }, 20s));
  std::string old_session = test::Sql(url_, "SELECT session FROM workers");
  controllers_[0]->Signal(SIGTERM);
  EXPECT_EQ(controllers_[0]->Wait(10s), 0) << "controller did not stop promptly on SIGTERM";
  jobs = Jobs(RestartController(0));
  ASSERT_TRUE(test::WaitFor(
      [&] { return test::Sql(url_, "SELECT session FROM workers WHERE state = 'connected'") != old_session; }, 20s));
  EXPECT_EQ(Get(*jobs, id).status(), v1::RUNNING);
  std::ofstream(gate) << "go";
  ASSERT_TRUE(AllEnded(20s));
  auto j = Get(*jobs, id);
  EXPECT_EQ(j.status(), v1::SUCCEEDED);
  EXPECT_EQ(j.attempt(), 1) << "the job was re-run instead of adopted";
}

// A controller that hangs (SIGSTOP here; a stall, a VM pause) longer than
// the lease and the workers' keepalive (10 s + 5 s): when it runs again it
// finds every worker stream broken and every lease expired, through no fault
// of the workers. The worker comes back within the reconnect grace and keeps
// its job, which runs on to the end once: no requeue, no second attempt, no
// loss counted against the worker.
TEST_F(Farm, AHungControllerThatWakesUpLeavesRunningJobsWithTheirWorker) {
  // Time to come back on a loaded machine (the stop outlasts the lease
  // anyway: the keepalive takes 15 s).
  extra_conf_ = "lease = 10s\nreconnect_grace = 10s\n";
  SetUp();
  StartController();
  StartWorker(0, 1);
  auto jobs = Jobs();
  std::string gate = dir_.path() + "/gate";
  int64_t id = Submit(*jobs, {"sh", "-c", "while [ ! -e " + gate + " ]; do sleep 0.05; done; echo through"});
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, id).status() == v1::RUNNING; }, 20s));
  ASSERT_TRUE(Logged(0, "lease reaper: taking expired leases", 20s)) << "the reaper never began";

  controllers_[0]->Signal(SIGSTOP);
  // The worker gives the stream up (keepalive, 15 s), the lease (10 s) runs out.
  bool broke = Logged(1, "lost the controller stream", 40s);
  const size_t at = test::ReadFile(logs_[0]).size();  // the controller's log, where it stopped
  const size_t worker_at = test::ReadFile(logs_[1]).size();
  controllers_[0]->Signal(SIGCONT);
  ASSERT_TRUE(broke) << "the worker did not notice the hung controller";

  ASSERT_TRUE(Logged(0, "controller stalled", 20s, at));
  ASSERT_TRUE(Logged(1, "connected to controller", 30s, worker_at)) << "the worker did not come back";
  // The old stream's end: seen as stale at once (a heartbeat of the old
  // session after the new one registered), or a drop applied after the
  // grace, fenced by the new session: nothing requeued either way.
  ASSERT_TRUE(test::WaitFor(
      [&] {
        std::string after = test::ReadFile(logs_[0]).substr(at);
        return after.find("(jobs stay with the worker)") != std::string::npos ||
               after.find("worker came back within the grace worker_id=") != std::string::npos ||
               after.find("worker disconnected worker_id=") != std::string::npos;
      },
      30s));
  // The reaper, after its own lease of watching, takes nothing either.
  ASSERT_TRUE(Logged(0, "lease reaper: taking expired leases", 30s, at));
  std::string after = test::ReadFile(logs_[0]).substr(at);
  EXPECT_EQ(after.find("requeued=1"), std::string::npos) << after;

  auto running = Get(*jobs, id);
  EXPECT_EQ(running.status(), v1::RUNNING);
  EXPECT_EQ(running.attempt(), 1) << "the job was requeued while its worker ran it";
  std::ofstream(gate) << "go";
  ASSERT_TRUE(AllEnded(30s));
  auto j = Get(*jobs, id);
  EXPECT_EQ(j.status(), v1::SUCCEEDED);
  EXPECT_EQ(j.attempt(), 1);
  EXPECT_EQ(Log(*jobs, id), "through\n");
  EXPECT_EQ(test::Sql(url_, "SELECT health || ' ' || cardinality(infra_failures) FROM workers"), "healthy 0")
      << "the controller's hang was counted against the worker";
}

TEST_F(Farm, DatabaseRestartMidRunLosesNothing) {
  StartController();
  StartWorker(0, 2);
  auto jobs = Jobs();
  for (int i = 0; i < 20; ++i) Submit(*jobs, {"sh", "-c", "sleep 0.2; echo done"});
  ASSERT_TRUE(test::WaitFor([&] { return Count("status = 'succeeded'") >= 2; }, 30s));
  test::RestartDatabase();
  // Submits after the restart must work too (fresh pool connections, and the
  // listener re-LISTENs so the dispatcher wakes).
  std::vector<int64_t> later;
  ASSERT_TRUE(test::WaitFor(
      [&] {
        grpc::ClientContext ctx;
        v1::SubmitRequest r;
        r.mutable_spec()->add_argv("true");
        v1::SubmitResponse resp;
        if (!jobs->Submit(&ctx, r, &resp).ok()) return false;
        later.push_back(resp.job().id());
        return true;
      },
      20s));
  ASSERT_TRUE(AllEnded(60s));
  EXPECT_EQ(Count("status = 'succeeded'"), 21);
  EXPECT_EQ(Get(*jobs, later.back()).status(), v1::SUCCEEDED);
}

TEST_F(Farm, LogOutputWhileTheWorkerIsBetweenControllersIsKept) {
  StartController(UnixAddress("controller"));
  StartWorker(0, 1);
  auto jobs = Jobs();
  std::string gate = dir_.path() + "/gate";
  // Lines 1-3, then wait for the gate (opened while no controller runs), then 4-6.
  int64_t id = Submit(*jobs, {"sh", "-c",
                              "for i in 1 2 3; do echo line $i; done; while [ ! -e " + gate +
                                  " ]; do sleep 0.02; done; for i in 4 5 6; do echo line $i; done; touch " + gate +
                                  ".done"});
  ASSERT_TRUE(test::WaitFor([&] { return Log(*jobs, id) == "line 1\nline 2\nline 3\n"; }, 20s));
  std::string old_session = test::Sql(url_, "SELECT session FROM workers");
  controllers_[0]->Signal(SIGTERM);
  ASSERT_EQ(controllers_[0]->Wait(10s), 0);
  std::ofstream(gate) << "go";
  // The job ends while the worker has no controller: its output and result wait.
  ASSERT_TRUE(test::WaitFor([&] { return std::ifstream(gate + ".done").good(); }, 10s));
  jobs = Jobs(RestartController(0));
  ASSERT_TRUE(AllEnded(20s));
  EXPECT_EQ(Get(*jobs, id).status(), v1::SUCCEEDED);
  EXPECT_EQ(Get(*jobs, id).attempt(), 1);
  EXPECT_EQ(Log(*jobs, id), "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n");
}

TEST_F(Farm, TwoControllersOnOneDatabaseAssignNoJobTwice) {
  StartController();
  StartController();
  StartWorker(0, 3);
  StartWorker(1, 3);
  auto a = Jobs(0), b = Jobs(1);
  // Each run appends its job id (one short O_APPEND write) to a file both
  // workers share: a job given to two workers at once, or run again under
  // the same attempt, shows there even when the database keeps one result.
  const std::string ran = dir_.path() + "/ran";
  std::multiset<std::string> submitted;
  for (int i = 0; i < 100; ++i)
    submitted.insert(std::to_string(Submit(i % 2 ? *a : *b, {"sh", "-c", "echo $KILN_JOB_ID >> " + ran})));
  ASSERT_TRUE(AllEnded(60s));
  EXPECT_EQ(Count("status = 'succeeded' AND attempt = 1"), 100);
  EXPECT_EQ(std::stoi(test::Sql(url_, "SELECT count(DISTINCT worker_id) FROM build_jobs")), 2);
  std::multiset<std::string> runs;
  std::ifstream in(ran);
  for (std::string line; std::getline(in, line);) runs.insert(line);
  EXPECT_EQ(runs, submitted) << "every job runs exactly once";
}

TEST_F(Farm, ProjectConfigReachesAnotherControllerWithoutRestart) {
  StartController();
  StartController();
  auto admin = Admin(0);
  grpc::ClientContext ctx;
  v1::SetProjectConfigRequest r;
  r.set_name("default");
  r.set_config_json(R"({"default_priority": 7, "env": {"FROM_PROJECT": "yes"}})");
  v1::Project p;
  ASSERT_TRUE(admin->SetProjectConfig(&ctx, r, &p).ok());
  auto other = Jobs(1);
  EXPECT_TRUE(test::WaitFor([&] { return Get(*other, Submit(*other, {"true"})).priority() == 7; }, 5s));
  grpc::ClientContext bad_ctx;
  r.set_config_json(R"({"default_priority": "high"})");
  auto s = admin->SetProjectConfig(&bad_ctx, r, &p);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("default_priority"), std::string::npos);
}

TEST_F(Farm, DrainingWorkerFinishesItsJobAndTakesNoMore) {
  StartController();
  auto& w = StartWorker(0, 2);
  auto jobs = Jobs();
  int64_t first = Submit(*jobs, {"sleep", "1"});
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, first).status() == v1::RUNNING; }, 20s));
  w.Signal(SIGTERM);
  ASSERT_TRUE(test::WaitFor([&] { return test::Sql(url_, "SELECT state FROM workers") == "draining"; }, 5s));
  int64_t second = Submit(*jobs, {"true"});
  EXPECT_EQ(w.Wait(20s), 0) << "worker did not exit cleanly after draining";
  EXPECT_EQ(Get(*jobs, first).status(), v1::SUCCEEDED);
  EXPECT_EQ(Get(*jobs, second).status(), v1::QUEUED);
}

TEST_F(Farm, SecondSigtermKillsJobsAndExitsAtOnce) {
  StartController();
  auto& w = StartWorker(0, 1);
  auto jobs = Jobs();
  std::string pidfile = dir_.path() + "/job.pid";
  int64_t id = Submit(*jobs, {"sh", "-c", "echo $$ > " + pidfile + "; exec sleep 60"});
  pid_t job = 0;
  ASSERT_TRUE(test::WaitFor([&] { return static_cast<bool>(std::ifstream(pidfile) >> job) && job > 0; }, 20s));
  w.Signal(SIGTERM);
  ASSERT_TRUE(test::WaitFor([&] { return test::Sql(url_, "SELECT state FROM workers") == "draining"; }, 5s));
  w.Signal(SIGTERM);
  EXPECT_EQ(w.Wait(5s), 1) << "worker did not exit at once on the second SIGTERM";
  EXPECT_TRUE(test::WaitFor([&] { return kill(job, 0) != 0; }, 5s)) << "the job outlived its worker";
  // Its stream dropped: the job is back in line for another worker.
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, id).status() == v1::QUEUED; }, 10s));
  EXPECT_EQ(Get(*jobs, id).attempt(), 1);
}

TEST_F(Farm, WatchStreamsTheLogWhileTheJobRuns) {
  StartController();
  StartWorker(0, 1);
  auto jobs = Jobs();
  std::string gate = dir_.path() + "/gate";
  int64_t id = Submit(*jobs, {"sh", "-c", "echo first; while [ ! -e " + gate + " ]; do sleep 0.05; done; echo second"});
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
  v1::WatchJobRequest r;
  r.set_job_id(id);
  r.set_follow(true);
  auto reader = jobs->WatchJob(&ctx, r);
  v1::JobEvent ev;
  std::string log;
  v1::JobStatus last = v1::JOB_STATUS_UNSPECIFIED;
  while (reader->Read(&ev)) {
    if (ev.has_state()) last = ev.state().status();
    if (ev.has_log()) {
      log += ev.log().data();
      if (log == "first\n") {
        EXPECT_EQ(Get(*jobs, id).status(), v1::RUNNING);  // live, not after the fact
        std::ofstream(gate) << "go";
      }
    }
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(log, "first\nsecond\n");
  EXPECT_EQ(last, v1::SUCCEEDED);
  // Resume from an offset.
  grpc::ClientContext ctx2;
  r.set_follow(false);
  r.set_offset(6);
  auto again = jobs->WatchJob(&ctx2, r);
  std::string tail;
  while (again->Read(&ev)) {
    if (ev.has_log()) tail += ev.log().data();
  }
  EXPECT_EQ(tail, "second\n");
}

TEST_F(Farm, TimeoutKillsTheJobAndSaysSo) {
  StartController();
  StartWorker(0, 1);
  auto jobs = Jobs();
  int64_t id = Submit(*jobs, {"sleep", "60"}, 1);
  // Closing its output does not take a job out of reach of its timeout.
  int64_t quiet = Submit(*jobs, {"sh", "-c", "exec >/dev/null 2>&1; sleep 60"}, 1);
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, id).status() == v1::FAILED; }, 20s));
  auto j = Get(*jobs, id);
  EXPECT_TRUE(j.result().timed_out());
  EXPECT_NE(j.result().error().find("timeout of 1 s"), std::string::npos) << j.result().error();
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, quiet).status() == v1::FAILED; }, 20s));
  EXPECT_TRUE(Get(*jobs, quiet).result().timed_out());
}

TEST_F(Farm, AJobNoWorkerCanRunIsReportedNotSilent) {
  StartController();
  StartWorker(0, 1, {"--label", "ssd=yes"});
  auto jobs = Jobs();
  int64_t arm = Submit(*jobs, {"true"}, 0, {{"arch", "aarch64"}});
  int64_t ssd = Submit(*jobs, {"true"}, 0, {{"ssd", "yes"}});
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, ssd).status() == v1::SUCCEEDED; }, 20s));
  auto j = Get(*jobs, arm);
  EXPECT_EQ(j.status(), v1::QUEUED);
  EXPECT_NE(j.unsatisfiable().find("aarch64"), std::string::npos) << j.unsatisfiable();
}

TEST_F(Farm, AJobWithoutAnImageRunsOnlyWhereWorkersAllowPlainProcesses) {
  StartController();
  StartWorker(0, 1, {"--set", "allow_plain_jobs=false"});  // the default
  auto jobs = Jobs();
  std::string marker = dir_.path() + "/ran-on";
  int64_t id = Submit(*jobs, {"sh", "-c", "touch " + marker});
  // Not run, not failed: it waits, and says why and what to do.
  ASSERT_TRUE(test::WaitFor([&] { return !Get(*jobs, id).unsatisfiable().empty(); }, 10s));
  auto j = Get(*jobs, id);
  EXPECT_EQ(j.status(), v1::QUEUED);
  EXPECT_NE(j.unsatisfiable().find("--image"), std::string::npos) << j.unsatisfiable();
  EXPECT_NE(j.unsatisfiable().find("allow_plain_jobs = true"), std::string::npos) << j.unsatisfiable();
  EXPECT_FALSE(std::filesystem::exists(marker));
  // A trusted worker (plain processes allowed) takes it.
  StartWorker(0, 1, {"--label", "trusted=yes"});
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, id).status() == v1::SUCCEEDED; }, 20s));
  EXPECT_EQ(test::Sql(url_, "SELECT w.properties->>'trusted' FROM build_jobs j JOIN workers w ON w.id = j.worker_id"
                            " WHERE j.id = " + std::to_string(id)),
            "yes");
}

TEST_F(Farm, HealthCheckingAndReflectionWorkForGenericTools) {
  StartController();
  // Over TLS (generic tools are given the farm's CA), without a token:
  // health and reflection are public.
  api::ChannelOptions o;
  o.address = addresses_[0];
  o.ca_pem = test::ReadFile(tls_ + "/ca.crt");
  auto channel = api::MakeChannel(o, grpc::ChannelArguments());
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const char* service : {"", "kiln.v1.JobService", "kiln.v1.WorkerService"}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok()) << service;
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  grpc::ClientContext ctx;
  auto stream = reflection->ServerReflectionInfo(&ctx);
  grpc::reflection::v1alpha::ServerReflectionRequest req;
  req.set_list_services("");
  ASSERT_TRUE(stream->Write(req));
  grpc::reflection::v1alpha::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  std::set<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.insert(s.name());
  EXPECT_TRUE(names.count("kiln.v1.JobService"));
  EXPECT_TRUE(names.count("kiln.v1.AdminService"));
  EXPECT_TRUE(names.count("kiln.v1.WorkerService"));
  // And the schema of a message can be fetched, as grpcurl-like tools do.
  req.set_file_containing_symbol("kiln.v1.SubmitRequest");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_GT(resp.file_descriptor_response().file_descriptor_proto_size(), 0);
  stream->WritesDone();
  stream->Finish();
}

TEST_F(Farm, InvalidRequestsGetClearErrors) {
  StartController();
  auto jobs = Jobs();
  grpc::ClientContext c1;
  v1::SubmitRequest empty;
  v1::SubmitResponse resp;
  auto s = jobs->Submit(&c1, empty, &resp);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("empty command"), std::string::npos);
  grpc::ClientContext c2;
  v1::SubmitRequest escape;
  escape.mutable_spec()->add_argv("true");
  escape.mutable_spec()->set_working_dir("../../etc");
  EXPECT_EQ(jobs->Submit(&c2, escape, &resp).error_code(), grpc::INVALID_ARGUMENT);
  grpc::ClientContext c3;
  v1::SubmitRequest unknown;
  unknown.set_project("nope");
  unknown.mutable_spec()->add_argv("true");
  s = jobs->Submit(&c3, unknown, &resp);
  EXPECT_EQ(s.error_code(), grpc::NOT_FOUND);
  EXPECT_NE(s.error_message().find("kiln projects create nope"), std::string::npos);
  grpc::ClientContext c4;
  v1::GetJobRequest g;
  g.set_job_id(424242);
  v1::Job j;
  EXPECT_EQ(jobs->GetJob(&c4, g, &j).error_code(), grpc::NOT_FOUND);
  EXPECT_EQ(Count("true"), 0);
}

}  // namespace
}  // namespace kiln
