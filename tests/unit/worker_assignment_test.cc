// An assignment is converted from the wire once, into the worker's own
// type, and the reports on it are built from that.

#include <gtest/gtest.h>

#include "worker/assignment.h"

namespace kiln::worker {
namespace {

const std::string kHash(64, 'a');

TEST(Assignment, ConvertsEveryFieldOnce) {
  v1::Assign w;
  w.set_job_id(42);
  w.set_attempt(3);
  w.set_project("proj");
  auto* s = w.mutable_spec();
  s->add_argv("make");
  s->add_argv("-j2");
  (*s->mutable_env())["CC"] = "gcc";
  s->set_working_dir("src");
  s->set_timeout_s(90);
  s->mutable_input_root()->set_hash(kHash);
  s->mutable_input_root()->set_size(123);
  s->add_outputs("out/bin");
  s->set_image("sha256:" + std::string(64, 'b'));
  s->mutable_resources()->set_memory_bytes(1 << 20);
  s->set_no_compile_cache(true);
  s->set_workspace("persistent");
  s->set_workspace_name("main");

  Assignment a = FromProto(w);
  EXPECT_EQ(a.job_id, 42);
  EXPECT_EQ(a.attempt, 3);
  EXPECT_EQ(a.project, "proj");
  EXPECT_EQ(a.spec.argv, (std::vector<std::string>{"make", "-j2"}));
  EXPECT_EQ(a.spec.env.at("CC"), "gcc");
  EXPECT_EQ(a.spec.working_dir, "src");
  EXPECT_EQ(a.spec.timeout_s, 90);
  EXPECT_EQ(a.spec.outputs, (std::vector<std::string>{"out/bin"}));
  EXPECT_EQ(a.spec.image, "sha256:" + std::string(64, 'b'));
  EXPECT_EQ(a.spec.memory_bytes, 1 << 20);
  EXPECT_TRUE(a.spec.no_compile_cache);
  EXPECT_EQ(a.spec.workspace, "persistent");
  EXPECT_EQ(a.spec.workspace_name, "main");
  ASSERT_TRUE(a.input_root.has_value());
  EXPECT_EQ(a.input_root->hash, kHash);
  EXPECT_EQ(a.input_root->size, 123);
  EXPECT_EQ(a.spec.input_root, kHash + "/123");
}

TEST(Assignment, WithoutAnInputRootHasNone) {
  v1::Assign w;
  w.set_job_id(1);
  w.mutable_spec()->add_argv("true");
  Assignment a = FromProto(w);
  EXPECT_FALSE(a.input_root.has_value());
  EXPECT_TRUE(a.spec.input_root.empty());
}

TEST(Assignment, KeepsAMalformedInputRootForTheRunToRefuse) {
  // Checked where it is used (the job fails with a message), not dropped here.
  v1::Assign w;
  w.mutable_spec()->mutable_input_root()->set_hash("not-a-hash");
  w.mutable_spec()->mutable_input_root()->set_size(-1);
  Assignment a = FromProto(w);
  ASSERT_TRUE(a.input_root.has_value());
  EXPECT_EQ(a.input_root->hash, "not-a-hash");
  EXPECT_FALSE(cas::CheckDigest(*a.input_root, "input_root").ok());
}

TEST(Assignment, BuildsItsReports) {
  Assignment a;
  a.job_id = 7;
  a.attempt = 2;
  v1::JobUpdate r = RunningUpdate(a, 1000);
  EXPECT_EQ(r.job_id(), 7);
  EXPECT_EQ(r.attempt(), 2);
  EXPECT_EQ(r.status(), v1::RUNNING);
  EXPECT_EQ(r.started_at_ms(), 1000);

  RunOutcome out;
  out.status = queue::JobStatus::kFailed;
  out.result.exit_code = 2;
  out.result.error = "boom";
  out.result.output_root = kHash + "/5";
  out.started_ms = 1000;
  out.finished_ms = 2500;
  v1::JobUpdate f = FinalUpdate(a, out, 321);
  EXPECT_EQ(f.job_id(), 7);
  EXPECT_EQ(f.attempt(), 2);
  EXPECT_EQ(f.status(), v1::FAILED);
  EXPECT_EQ(f.result().exit_code(), 2);
  EXPECT_EQ(f.result().error(), "boom");
  EXPECT_EQ(f.result().output_root().hash(), kHash);
  EXPECT_EQ(f.result().output_root().size(), 5);
  EXPECT_EQ(f.started_at_ms(), 1000);
  EXPECT_EQ(f.finished_at_ms(), 2500);
  EXPECT_EQ(f.log_size(), 321);

  v1::JobUpdate h = HandBackUpdate(7, 2, "the worker is draining");
  EXPECT_EQ(h.status(), v1::QUEUED);
  EXPECT_EQ(h.attempt(), 2);
  EXPECT_EQ(h.result().exit_code(), -1);
  EXPECT_EQ(h.result().error(), "the worker is draining");
}

}  // namespace
}  // namespace kiln::worker
