#include "cluster/scaler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace kiln::cluster {
namespace {

std::string Seconds(int64_t ms) {
  const int64_t tenths = (ms + 50) / 100;
  std::string s = std::to_string(tenths / 10);
  if (tenths % 10 != 0) s += "." + std::to_string(tenths % 10);
  return s + "s";
}

// 1, 0.5, 1.25: at most two decimals, no trailing zeros.
std::string Number(double x) {
  std::string s = std::to_string(std::llround(x * 100) / 100.0);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

const char* ActionName(Decision::Action a) {
  switch (a) {
    case Decision::Action::kScaleUp: return "scale_up";
    case Decision::Action::kScaleDown: return "scale_down";
    case Decision::Action::kHold: return "hold";
    case Decision::Action::kNone: return "none";
  }
  return "?";
}

Decision Decide(const Spec& spec, int previous, const Signals& seen, int64_t last_change_ms, int64_t now_ms) {
  Decision d;
  d.previous = std::max(0, previous);
  d.desired = d.previous;
  const Policy& p = spec.policy;
  const int64_t load = std::max<int64_t>(0, seen.queued_jobs) + std::max<int64_t>(0, seen.running_jobs) +
                       std::max<int64_t>(0, seen.queued_actions);
  const double per_worker = std::max(1, spec.slots_per_worker) * (p.jobs_per_slot > 0 ? p.jobs_per_slot : 1.0);
  const double asked = std::ceil(static_cast<double>(load) / per_worker);
  int wanted = asked >= spec.max_workers ? spec.max_workers : static_cast<int>(asked);
  std::string why = std::to_string(seen.queued_jobs) + " jobs queued, " + std::to_string(seen.running_jobs) +
                    " running, " + std::to_string(seen.queued_actions) + " actions queued: " +
                    std::to_string(static_cast<int64_t>(asked)) + " workers of " +
                    std::to_string(spec.slots_per_worker) + " slots at " +
                    Number(p.jobs_per_slot) + " jobs per slot";
  if (p.target_queue_wait_ms > 0 && seen.queued_jobs > 0 && seen.oldest_wait_ms > p.target_queue_wait_ms &&
      wanted <= d.previous) {
    wanted = d.previous + 1;
    why = "the oldest of " + std::to_string(seen.queued_jobs) + " queued jobs has waited " +
          Seconds(seen.oldest_wait_ms) + ", over the target " + Seconds(p.target_queue_wait_ms);
  }
  wanted = std::clamp(wanted, spec.min_workers, spec.max_workers);
  d.wanted = wanted;
  // Outside the bounds (a change of min or max): back inside at once.
  if (d.previous < spec.min_workers) {
    d.action = Decision::Action::kScaleUp;
    d.desired = std::max(spec.min_workers, std::min(wanted, d.previous + std::max(1, p.scale_up_step)));
    d.reason = std::to_string(d.previous) + " is below the minimum " + std::to_string(spec.min_workers) + "; " + why;
    return d;
  }
  if (d.previous > spec.max_workers) {
    d.action = Decision::Action::kScaleDown;
    d.desired = spec.max_workers;
    d.reason = std::to_string(d.previous) + " is above the maximum " + std::to_string(spec.max_workers);
    return d;
  }
  if (wanted == d.previous) return d;
  const bool up = wanted > d.previous;
  const int64_t since = last_change_ms > 0 ? now_ms - last_change_ms : INT64_MAX;
  const int64_t cooldown = up ? p.scale_up_cooldown_ms : p.scale_down_cooldown_ms;
  if (since < cooldown) {
    d.action = Decision::Action::kHold;
    d.reason = std::string("would scale ") + (up ? "up" : "down") + " to " + std::to_string(wanted) + " (" + why +
               "), but the last change was " + Seconds(since) + " ago, within the scale-" + (up ? "up" : "down") +
               " cooldown " + Seconds(cooldown);
    return d;
  }
  if (up) {
    d.action = Decision::Action::kScaleUp;
    d.desired = std::min(wanted, d.previous + std::max(1, p.scale_up_step));
    d.reason = why;
    if (d.desired < wanted) d.reason += "; at most " + std::to_string(p.scale_up_step) + " more at a time";
    return d;
  }
  d.action = Decision::Action::kScaleDown;
  d.desired = wanted;
  d.reason = why + "; idle workers drain after the scale-in delay " + Seconds(p.scale_in_delay_ms);
  return d;
}

}  // namespace kiln::cluster
