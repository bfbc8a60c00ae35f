// A cluster's desired state: what `kiln clusters set` accepts and refuses
// (cluster/spec.h).

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cluster/spec.h"

namespace kiln::cluster {
namespace {

Spec Good() {
  Spec s;
  s.cluster = "east";
  s.min_workers = 1;
  s.max_workers = 3;
  s.slots_per_worker = 2;
  s.labels = {{"pool", "fast"}};
  s.worker_config = R"({"sandbox": "none", "allow_plain_jobs": true, "cache_max_bytes": "1GiB"})";
  return s;
}

// The error for `s`, which must be InvalidArgument.
std::string Refused(const Spec& s) {
  Status st = Validate(s);
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.message();
  return st.message();
}

TEST(ClusterSpec, TheDefaultsAndAFullSpecValidate) {
  Spec d;
  d.cluster = "default";
  EXPECT_TRUE(Validate(d).ok()) << Validate(d).message();
  EXPECT_TRUE(Validate(Good()).ok()) << Validate(Good()).message();
}

TEST(ClusterSpec, BoundsAreCheckedWithTheFlagNamed) {
  Spec s = Good();
  s.min_workers = 4;
  EXPECT_EQ(Refused(s), "--min 4 is above --max 3: give a --max at least as large");
  s = Good();
  s.max_workers = 1001;
  EXPECT_NE(Refused(s).find("--max 1001 is out of bounds: 0 to 1000"), std::string::npos);
  s = Good();
  s.min_workers = -1;
  EXPECT_NE(Refused(s).find("--min -1"), std::string::npos);
  s = Good();
  s.slots_per_worker = 0;
  EXPECT_NE(Refused(s).find("--slots 0"), std::string::npos);
  s = Good();
  s.policy.scale_up_step = 0;
  EXPECT_NE(Refused(s).find("--scale-up-step"), std::string::npos);
  s = Good();
  s.policy.jobs_per_slot = 0;
  EXPECT_NE(Refused(s).find("--jobs-per-slot"), std::string::npos);
  s = Good();
  s.policy.scale_in_delay_ms = 2 * kMaxPolicyMs;
  EXPECT_NE(Refused(s).find("--scale-in-delay"), std::string::npos);
  s = Good();
  s.cluster = "no spaces";
  Refused(s);
}

TEST(ClusterSpec, OnlyKnownProvidersAndCommandNeedsItsExecutable) {
  Spec s = Good();
  s.provider = "ec2";
  EXPECT_NE(Refused(s).find("process, systemd or command"), std::string::npos);
  s.provider = "systemd";
  EXPECT_TRUE(Validate(s).ok());
  s.provider = "command";
  EXPECT_NE(Refused(s).find("\"command\": \"/abs/path\""), std::string::npos);
  s.provider_settings = R"({"command": "relative.sh"})";
  Refused(s);
  s.provider_settings = R"({"command": "/usr/local/bin/kiln-provider"})";
  EXPECT_TRUE(Validate(s).ok()) << Validate(s).message();
  // The provider's own checks: refused when set, not first at plan time.
  s.provider_settings = R"({"command": "/usr/local/bin/kiln-provider", "timeout_s": 0})";
  EXPECT_NE(Refused(s).find("timeout_s must be a whole number of seconds"), std::string::npos);
  s.provider = "systemd";
  s.provider_settings = R"({"root": "relative"})";
  EXPECT_NE(Refused(s).find("root must be an absolute path"), std::string::npos);
}

TEST(ClusterSpec, WorkerConfigIsCheckedAsKilnWorkerWouldReadIt) {
  Spec s = Good();
  s.worker_config = "[1]";
  EXPECT_NE(Refused(s).find("must be a JSON object"), std::string::npos);
  s.worker_config = "{";
  EXPECT_NE(Refused(s).find("not valid JSON"), std::string::npos);
  s.worker_config = R"({"no_such_key": 1})";
  EXPECT_NE(Refused(s).find("no_such_key"), std::string::npos);
  s.worker_config = R"({"sandbox": "docker"})";
  EXPECT_NE(Refused(s).find("sandbox"), std::string::npos);
  s.worker_config = R"({"work_dir": "/x"})";
  EXPECT_NE(Refused(s).find("set by the deployer"), std::string::npos);
  s.worker_config = R"({"slots": 4})";
  EXPECT_NE(Refused(s).find("use --slots"), std::string::npos);
  s.worker_config = R"({"label.pool": "x"})";
  EXPECT_NE(Refused(s).find("--label"), std::string::npos);
  // The farm's TLS decides these, not the spec.
  s.worker_config = R"({"insecure": true})";
  EXPECT_NE(Refused(s).find("set by the deployer"), std::string::npos);
  s.worker_config = R"({"ca_file": "/tmp/other.crt"})";
  EXPECT_NE(Refused(s).find("set by the deployer"), std::string::npos);
  // A value is one line of the worker's file: no line of its own after it.
  s.worker_config = R"({"log_level": "info\ncontroller = 10.0.0.9:7070"})";
  EXPECT_NE(Refused(s).find("control characters"), std::string::npos);
  s.worker_config = R"({"log_level": "info # x"})";
  EXPECT_NE(Refused(s).find("control characters and '#'"), std::string::npos);
  s.worker_config = R"({"sandbox": ["runc"]})";
  EXPECT_NE(Refused(s).find("string, number or boolean"), std::string::npos);
  s.worker_config = "{}";
  s.labels = {{"arch", "x86_64"}};
  EXPECT_NE(Refused(s).find("reported by the worker itself"), std::string::npos);
}

TEST(ClusterSpec, CanonicalJsonAndTheAuditShape) {
  Spec s = Good();
  s.worker_config = R"({ "sandbox" : "none",  "allow_plain_jobs": true })";
  ASSERT_TRUE(Canonicalize(s).ok());
  EXPECT_EQ(s.worker_config, R"({"allow_plain_jobs":true,"sandbox":"none"})");
  auto j = nlohmann::json::parse(ToJson(s));
  EXPECT_EQ(j.at("min_workers"), 1);
  EXPECT_EQ(j.at("max_workers"), 3);
  EXPECT_EQ(j.at("provider"), "process");
  EXPECT_EQ(j.at("labels").at("pool"), "fast");
  EXPECT_EQ(j.at("worker_config").at("sandbox"), "none");
  s.provider_settings = "nope";
  EXPECT_EQ(Canonicalize(s).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::cluster
