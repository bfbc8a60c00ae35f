#include "worker/ledger.h"

#include <signal.h>

namespace kiln::worker {

JobLedger::Admission JobLedger::Admit(int64_t job_id, int attempt, int slots, bool draining, const v1::Assign* wire) {
  auto js = std::make_shared<JobState>();
  js->id = job_id;
  js->attempt = attempt;
  std::lock_guard g(mu_);
  auto it = jobs_.find(job_id);
  if (it != jobs_.end() && it->second->attempt >= attempt) return {};  // a repeat of what we run
  if (it != jobs_.end()) {
    // A newer attempt owns the job: stop ours; the new one takes its slot
    // once it has stopped (a still newer one replaces it).
    it->second->cancel = true;
    if (wire != nullptr) {
      auto s = successors_.find(job_id);
      if (s == successors_.end() || s->second.attempt() <= attempt) successors_[job_id] = *wire;
    }
    return {nullptr, "an older attempt of the job is still stopping here", true};
  }
  if (draining) return {nullptr, "the worker is draining"};
  if (static_cast<int>(jobs_.size()) >= slots) return {nullptr, "the worker has no free slot"};
  if (early_cancels_.erase({job_id, attempt})) js->cancel = true;
  jobs_[job_id] = js;
  ++live_runs_;
  return {js, ""};
}

void JobLedger::RunEnded() {
  {
    std::lock_guard g(mu_);
    --live_runs_;
  }
  cv_.notify_all();
}

std::optional<v1::Assign> JobLedger::TakeSuccessor(int64_t job_id) {
  std::lock_guard g(mu_);
  auto it = successors_.find(job_id);
  if (it == successors_.end()) return std::nullopt;
  v1::Assign next = std::move(it->second);
  successors_.erase(it);
  return next;
}

void JobLedger::Finish(const v1::JobUpdate& u, bool ran_here) {
  std::lock_guard g(mu_);
  if (ran_here) jobs_.erase(u.job_id());
  unacked_[{u.job_id(), u.attempt()}] = u;
}

void JobLedger::Ack(int64_t job_id, int attempt) {
  {
    std::lock_guard g(mu_);
    unacked_.erase({job_id, attempt});
  }
  cv_.notify_all();
}

JobLedger::CancelResult JobLedger::Cancel(int64_t job_id, int attempt) {
  std::lock_guard g(mu_);
  auto it = jobs_.find(job_id);
  if (it != jobs_.end() && it->second->attempt == attempt) {
    it->second->cancel = true;
    return CancelResult::kCancelled;
  }
  if (!unacked_.count({job_id, attempt}) && early_cancels_.size() < 10000) {
    early_cancels_.insert({job_id, attempt});
    return CancelResult::kRemembered;
  }
  return CancelResult::kIgnored;
}

JobLedger::Held JobLedger::Snapshot() const {
  Held h;
  std::lock_guard g(mu_);
  for (const auto& [jid, js] : jobs_) {
    // The job is the successor's (the controller gave it that attempt).
    auto next = successors_.find(jid);
    h.running.emplace_back(jid, next != successors_.end() ? next->second.attempt() : js->attempt);
  }
  for (const auto& [_, u] : unacked_) {
    h.reports.push_back(u);
    h.running.emplace_back(u.job_id(), u.attempt());
  }
  return h;
}

size_t JobLedger::running() const {
  std::lock_guard g(mu_);
  return jobs_.size();
}

size_t JobLedger::unacked() const {
  std::lock_guard g(mu_);
  return unacked_.size();
}

bool JobLedger::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return jobs_.empty() && live_runs_ == 0; });
}

void JobLedger::WaitIdle() {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] { return jobs_.empty() && live_runs_ == 0; });
}

size_t JobLedger::HandBackAll() {
  std::lock_guard g(mu_);
  for (auto& [_, js] : jobs_) js->hand_back = true;
  return jobs_.size();
}

bool JobLedger::WaitAcked(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return unacked_.empty(); });
}

void JobLedger::KillAll() {
  std::lock_guard g(mu_);
  for (auto& [_, js] : jobs_) {
    if (js->pgid > 0) kill(-js->pgid, SIGKILL);
  }
}

}  // namespace kiln::worker
