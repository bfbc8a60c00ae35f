#include "controller/deployer.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "auth/trust_store.h"
#include "cluster/instance_store.h"
#include "cluster/provider.h"
#include "cluster/state_store.h"
#include "common/util.h"
#include "common/version.h"

namespace kiln::controller {
namespace {

constexpr int64_t kDefaultRegisterMs = 120'000;

std::string Setting(const cluster::Spec& s, const char* key, const std::string& fallback) {
  auto j = nlohmann::json::parse(s.provider_settings, nullptr, false);
  if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return fallback;
}

// The cluster's provider, from its settings and this controller's defaults.
Result<std::unique_ptr<cluster::Provider>> ProviderOf(const cluster::Spec& s, const DeployerDeps& d) {
  return cluster::MakeProvider(s, {d.worker_binary, d.default_root});
}

int64_t RegisterMs(const cluster::Spec& s) {
  auto j = nlohmann::json::parse(s.provider_settings, nullptr, false);
  if (j.is_object() && j.contains("register_timeout_s") && j["register_timeout_s"].is_number_integer())
    return j["register_timeout_s"].get<int64_t>() * 1000;
  return kDefaultRegisterMs;
}

std::string ScalarText(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

}  // namespace

Deployer::Deployer(DeployerDeps d) : d_(std::move(d)) {}

Result<Deployer::Refreshed> Deployer::Refresh(const std::string& name) {
  auto spec = d_.state.Get(name);
  if (!spec.ok()) return spec.status();
  if (!*spec)
    return FailedPrecondition("cluster " + name + " is not managed: give it a desired state first (kiln clusters set " +
                              name + " --min N --max N)");
  auto rows = d_.instances.List(name);
  if (!rows.ok()) return rows.status();
  auto workers = d_.instances.Workers(name);
  if (!workers.ok()) return workers.status();
  auto now = d_.instances.NowMs();
  if (!now.ok()) return now.status();
  auto last = d_.instances.Last(name);
  if (!last.ok()) return last.status();
  Refreshed r{std::move(**spec), {}, *now, *last};
  auto provider = ProviderOf(r.spec, d_);
  if (!provider.ok()) return provider.status();
  auto seen = (*provider)->List();
  if (!seen.ok()) return seen.status();
  r.actual.workers = std::move(*workers);
  for (const auto& row : *rows) {
    cluster::Instance in;
    in.id = row.id;
    in.config_hash = row.config_hash;
    in.state = row.state;
    in.worker_id = row.worker_id;
    in.created_at_ms = row.created_at_ms;
    in.register_deadline_ms = row.register_deadline_ms;
    in.alive = false;
    for (const auto& p : *seen)
      if (p.id == row.id) in.alive = p.alive;
    r.actual.instances.push_back(in);
  }
  return r;
}

cluster::Plan Deployer::PlanFrom(const Refreshed& r, int desired) const {
  const std::string hash = cluster::ConfigHash(r.spec, kVersion);
  // The autoscaler's count, when it has decided one.
  if (desired < 0 && r.last) desired = r.last->desired;
  if (desired < 0) {
    // As many as serve now: plan with the count itself, then clamp. Those
    // being replaced count too: their successors take their place.
    auto probe = cluster::MakePlan(r.spec, r.spec.max_workers, r.actual, hash, r.now_ms);
    int replacing = 0;
    for (const auto& st : probe.steps) replacing += st.op == cluster::Op::kReplace;
    desired = probe.serving + replacing;
  }
  return cluster::MakePlan(r.spec, desired, r.actual, hash, r.now_ms);
}

Result<cluster::Plan> Deployer::MakePlan(const std::string& name, int desired) {
  auto r = Refresh(name);
  if (!r.ok()) return r.status();
  return PlanFrom(*r, desired);
}

Result<std::vector<cluster::Plan>> Deployer::PlanAll() {
  auto specs = d_.state.List();
  if (!specs.ok()) return specs.status();
  std::vector<cluster::Plan> out;
  Status first = Status::Ok();
  for (const auto& s : *specs) {
    auto p = MakePlan(s.cluster);
    if (!p.ok()) {
      // One cluster whose provider cannot plan does not hide the others.
      spdlog::warn("cluster plan failed cluster={} error=\"{}\"", s.cluster, p.status().message());
      if (first.ok()) first = p.status();
      continue;
    }
    out.push_back(std::move(*p));
  }
  if (out.empty() && !first.ok()) return first;
  return out;
}

Deployer::Serial Deployer::Serialize() {
  Serial s{std::unique_lock<std::mutex>(apply_mu_), nullptr, Status::Ok()};
  auto farm = d_.instances.HoldApplyLock();
  if (farm.ok()) s.farm = std::move(*farm);
  else s.status = farm.status();
  return s;
}

Result<std::vector<cluster::DecisionRow>> Deployer::History(const std::string& name, int limit) {
  auto spec = d_.state.Get(name);  // NotFound for no such cluster
  if (!spec.ok()) return spec.status();
  return d_.instances.Decisions(name, limit);
}

Deployer::Applied Deployer::Apply(const cluster::Plan& plan, const audit::Who& who, const Serial& serial) {
  if (!serial.status.ok()) return {{}, serial.status};
  if (!serial.local.owns_lock() || serial.local.mutex() != &apply_mu_ || !serial.farm)
    return {{}, Internal("an apply without this deployer's lock")};
  auto spec = d_.state.Get(plan.cluster);
  if (!spec.ok()) return {{}, spec.status()};
  if (!*spec) return {{}, FailedPrecondition("cluster " + plan.cluster + " is not managed")};
  const cluster::Spec& s = **spec;
  auto made = ProviderOf(s, d_);
  if (!made.ok()) return {{}, made.status()};
  cluster::Provider& provider = **made;
  const std::string hash = cluster::ConfigHash(s, kVersion);
  std::vector<std::string> done;
  Status first = Status::Ok();
  // Instances whose worker registered since the last apply run now.
  if (auto rows = d_.instances.List(plan.cluster); rows.ok()) {
    for (const auto& r : *rows)
      if (r.state == "starting" && !r.worker_id.empty()) (void)d_.instances.SetState(r.id, "running");
  }
  auto fail = [&](const Status& st, const std::string& what) {
    spdlog::warn("cluster step failed cluster={} step=\"{}\": {}", plan.cluster, what, st.message());
    if (first.ok()) first = st;
  };
  auto start = [&]() -> Status {
    const std::string id = plan.cluster + "-" + RandomHex(3);
    cluster::InstanceRow row;
    row.id = id;
    row.cluster = plan.cluster;
    row.provider = s.provider;
    row.config_hash = hash;
    row.work_dir = provider.WorkDir(id);
    cluster::Launch launch;
    launch.id = id;
    launch.work_dir = row.work_dir;
    launch.settings = {{"controller", Setting(s, "controller", d_.controller_address())},
                       {"cluster", s.cluster},
                       {"slots", std::to_string(s.slots_per_worker)}};
    for (const auto& [k, v] : s.labels) launch.settings.emplace_back("label." + k, v);
    auto wc = nlohmann::json::parse(s.worker_config, nullptr, false);
    if (wc.is_object())
      for (const auto& [k, v] : wc.items()) launch.settings.emplace_back(k, ScalarText(v));
    if (d_.tls_dir.empty()) {
      launch.settings.emplace_back("insecure", "true");
    } else {
      auto token = d_.trust.CreateJoinToken("controller " + d_.controller_id, RegisterMs(s) + 60'000, who);
      if (!token.ok()) return token.status();
      launch.join_token = *token;
      launch.ca_file = d_.tls_dir + "/ca.crt";
    }
    // The row first: an instance never runs without one.
    KILN_RETURN_IF_ERROR(d_.instances.Insert(row, RegisterMs(s)));
    if (Status st = provider.Create(launch); !st.ok()) {
      // The row goes only with what it stands for: a create that failed
      // half-way may have left an instance that a failed destroy leaves
      // running. Kept, the next refresh finds it (the row is "starting"):
      // it is adopted if its worker registers, destroyed at its deadline
      // if not.
      Status gone = provider.Destroy(id);
      if (gone.ok() || gone.code() == Code::kNotFound) (void)d_.instances.Remove(id);
      else
        spdlog::warn("cluster instance kept after a failed create cluster={} instance={}: cannot destroy it: {}",
                     plan.cluster, id, gone.message());
      return st;
    }
    done.push_back("start " + id);
    return Status::Ok();
  };
  auto drain = [&](const std::string& id, const std::string& why) -> Status {
    Status st = provider.Drain(id);
    if (!st.ok() && st.code() != Code::kNotFound) return st;
    KILN_RETURN_IF_ERROR(d_.instances.SetState(id, "draining"));
    done.push_back("drain " + id + " (" + why + ")");
    return Status::Ok();
  };
  for (const auto& step : plan.steps) {
    const std::string what = std::string(cluster::OpName(step.op)) + " " + step.instance;
    // Another controller may apply once the lock is gone: nothing more here.
    if (Status held = serial.farm->Held(); !held.ok()) {
      fail(held, what);
      break;
    }
    Status st;
    switch (step.op) {
      case cluster::Op::kStart: st = start(); break;
      case cluster::Op::kDrain: st = drain(step.instance, step.reason); break;
      case cluster::Op::kReplace:
        st = start();
        if (st.ok()) st = drain(step.instance, "replaced: " + step.reason);
        break;
      case cluster::Op::kDestroy:
        st = provider.Destroy(step.instance);
        if (st.ok()) st = d_.instances.Remove(step.instance);
        if (st.ok()) done.push_back("destroy " + step.instance + " (" + step.reason + ")");
        if (st.ok() && step.unregistered) {
          spdlog::warn("worker never registered cluster={} instance={}: destroyed (its log, kept by the provider, says why)",
                       plan.cluster, step.instance);
          if (d_.on_unregistered) d_.on_unregistered(plan.cluster);
        }
        break;
    }
    if (!st.ok()) fail(st, what);
  }
  if (!done.empty()) {
    if (Status st = d_.instances.RecordApply(plan.cluster, done, who); !st.ok()) fail(st, "record");
    spdlog::info("cluster applied cluster={} steps={}", plan.cluster, done.size());
  }
  return {done, first};
}

}  // namespace kiln::controller
