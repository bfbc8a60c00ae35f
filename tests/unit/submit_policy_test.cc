// What a submit becomes (controller::PlanSubmit): defaults, routing,
// workspaces, cache scope. Pure: no database.

#include "controller/submit_policy.h"

#include <gtest/gtest.h>

#include "cache/action.h"

namespace kiln::controller {
namespace {

const std::string kImage = "sha256:" + std::string(64, 'b');

SubmitAsk Ask(const std::string& project = "web") {
  SubmitAsk a;
  a.project = project;
  a.spec.argv = {"make", "-j2"};
  return a;
}

TEST(SubmitPolicy, TheProjectFillsWhatTheJobLeftOpen) {
  config::ProjectConfig pc;
  pc.default_priority = 7;
  pc.max_attempts = 5;
  pc.timeout_s = 900;
  pc.env = {{"CC", "gcc"}, {"LANG", "C"}};
  pc.requirements = {{"disk", "ssd"}};
  SubmitAsk a = Ask();
  a.spec.env = {{"LANG", "C.UTF-8"}};
  a.request_id = "ci-42";
  a.cluster = "big";
  queue::NewJob j = PlanSubmit(a, pc, kImage);
  EXPECT_EQ(j.project, "web");
  EXPECT_EQ(j.cluster, "big");
  EXPECT_EQ(j.request_id, "ci-42");
  EXPECT_EQ(j.priority, 7);
  EXPECT_EQ(j.max_attempts, 5);
  EXPECT_EQ(j.spec.timeout_s, 900);
  EXPECT_EQ(j.spec.env.at("CC"), "gcc");
  EXPECT_EQ(j.spec.env.at("LANG"), "C.UTF-8") << "the job's own value wins";
  EXPECT_EQ(j.spec.requirements.at("disk"), "ssd");
  EXPECT_EQ(j.spec.requirements.at("arch"), "x86_64");
  EXPECT_EQ(j.spec.image, kImage);
}

TEST(SubmitPolicy, WhatTheJobSetsWinsOverTheProject) {
  config::ProjectConfig pc;
  pc.default_priority = 7;
  pc.max_attempts = 5;
  pc.requirements = {{"arch", "aarch64"}};
  SubmitAsk a = Ask();
  a.priority = -3;  // a priority of its own, even below the default
  a.max_attempts = 1;
  a.spec.timeout_s = 60;
  a.spec.requirements = {{"arch", "x86_64"}};
  queue::NewJob j = PlanSubmit(a, pc, kImage);
  EXPECT_EQ(j.priority, -3);
  EXPECT_EQ(j.max_attempts, 1);
  EXPECT_EQ(j.spec.timeout_s, 60);
  EXPECT_EQ(j.spec.requirements.at("arch"), "x86_64");
}

TEST(SubmitPolicy, AJobInAnImageGoesToSandboxesAndIsCached) {
  config::ProjectConfig pc;
  SubmitAsk a = Ask();
  a.no_cache = true;
  queue::NewJob j = PlanSubmit(a, pc, kImage);
  EXPECT_EQ(j.spec.requirements.at("sandbox"), "runc");
  EXPECT_EQ(j.spec.requirements.count("plain"), 0u);
  EXPECT_EQ(j.cache_scope, "project:web");
  EXPECT_EQ(j.action_digest, cache::ActionDigest(j.spec));
  EXPECT_EQ(j.action_digest.size(), 64u);
  EXPECT_TRUE(j.no_cache);
  EXPECT_FALSE(j.spec.no_compile_cache);
}

TEST(SubmitPolicy, AJobWithoutAnImageGoesToPlainWorkersAndIsNeverCached) {
  config::ProjectConfig pc;
  SubmitAsk a = Ask();
  a.no_cache = true;
  queue::NewJob j = PlanSubmit(a, pc, "");
  EXPECT_EQ(j.spec.requirements.at("plain"), "yes");
  EXPECT_EQ(j.spec.requirements.count("sandbox"), 0u);
  EXPECT_EQ(j.cache_scope, "");
  EXPECT_EQ(j.action_digest, "");
  EXPECT_FALSE(j.no_cache) << "no_cache only means something for a cacheable job";
}

TEST(SubmitPolicy, ASharedScopeIsNamedApartFromEveryProjectsOwn) {
  config::ProjectConfig pc;
  pc.cache_scope = "web";
  EXPECT_EQ(CacheScope("api", pc), "shared:web");
  EXPECT_NE(CacheScope("api", pc), CacheScope("web", config::ProjectConfig{}));
  EXPECT_EQ(PlanSubmit(Ask("api"), pc, kImage).cache_scope, "shared:web");
}

TEST(SubmitPolicy, AWarmWorkspaceIsNamedAndNeverCached) {
  config::ProjectConfig pc;
  pc.workspace = "persistent";
  queue::NewJob j = PlanSubmit(Ask(), pc, kImage);
  EXPECT_EQ(j.spec.workspace, "persistent");
  EXPECT_EQ(j.spec.workspace_name, "default");
  EXPECT_EQ(j.action_digest, "") << "a warm workspace's result depends on earlier builds";
  EXPECT_EQ(j.cache_scope, "project:web") << "its compiles still use the compile cache";

  SubmitAsk named = Ask();
  named.spec.workspace_name = "release/1.2";
  EXPECT_EQ(PlanSubmit(named, pc, kImage).spec.workspace_name, "release/1.2");

  SubmitAsk fresh = Ask();
  fresh.spec.workspace = "fresh";
  fresh.spec.workspace_name = "ignored";
  queue::NewJob f = PlanSubmit(fresh, pc, kImage);
  EXPECT_EQ(f.spec.workspace, "");
  EXPECT_EQ(f.spec.workspace_name, "");
  EXPECT_EQ(f.action_digest.size(), 64u);
}

TEST(SubmitPolicy, AJobAsksForAWarmWorkspaceTheProjectDoesNotUse) {
  config::ProjectConfig pc;  // workspace = "fresh"
  SubmitAsk a = Ask();
  a.spec.workspace = "persistent";
  queue::NewJob j = PlanSubmit(a, pc, kImage);
  EXPECT_EQ(j.spec.workspace, "persistent");
  EXPECT_EQ(j.spec.workspace_name, "default");
}

TEST(SubmitPolicy, TheJobsImageElseTheProjects) {
  config::ProjectConfig pc;
  SubmitAsk a = Ask();
  EXPECT_EQ(ImageAsked(a, pc), "") << "neither names one: a plain job";
  pc.image = "sha256:" + std::string(64, 'p');
  EXPECT_EQ(ImageAsked(a, pc), pc.image);
  a.spec.image = kImage;
  EXPECT_EQ(ImageAsked(a, pc), kImage);
}

TEST(SubmitPolicy, AProjectWithoutTheCompileCacheRunsNoWrapper) {
  config::ProjectConfig pc;
  pc.compile_cache = false;
  EXPECT_TRUE(PlanSubmit(Ask(), pc, kImage).spec.no_compile_cache);
}

}  // namespace
}  // namespace kiln::controller
