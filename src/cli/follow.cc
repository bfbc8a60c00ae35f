#include "cli/follow.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <thread>

#include "cli/errors.h"
#include "cli/output.h"
#include "common/util.h"

namespace kiln::cli {
namespace {

// Log bytes to stdout, status lines to stderr; when both are one terminal,
// a status line after a log without a final newline starts on a fresh line.
class Printer {
 public:
  Printer() : shared_tty_(isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)) {}

  void Log(const char* data, size_t n) {
    if (n == 0) return;
    std::fwrite(data, 1, n, stdout);
    std::fflush(stdout);
    at_line_start_ = data[n - 1] == '\n';
  }

  void Line(const std::string& text) {
    if (shared_tty_ && !at_line_start_) {
      std::fputc('\n', stderr);
      at_line_start_ = true;
    }
    std::fprintf(stderr, "kiln: %s\n", text.c_str());
  }

 private:
  bool shared_tty_;
  bool at_line_start_ = true;
};

}  // namespace

Result<v1::Job> FollowJob(Client& client, const FollowOptions& o) {
  using Clock = std::chrono::steady_clock;
  constexpr std::chrono::milliseconds kFirstBackoff{250}, kMaxBackoff{4000};
  const std::string job_name = "job " + std::to_string(o.job_id);

  Printer out;
  int cur_attempt = o.attempt;  // attempt whose log we are reading (0: not known yet)
  int64_t offset = 0;           // bytes of it written so far
  v1::Job job;
  bool have_job = false;
  bool connected_once = false;

  // Status-line state.
  int seen_attempt = 0;
  v1::JobStatus last_status = v1::JOB_STATUS_UNSPECIFIED;
  std::string last_worker;
  std::string last_unsat = o.known_unsatisfiable;

  std::optional<Clock::time_point> outage_since;
  bool outage_reported = false;
  auto backoff = kFirstBackoff;

  bool removal_reported = false;

  auto on_state = [&](const v1::Job& j) {
    if (!o.status_lines) return;
    if (j.has_log_removed() && !removal_reported) {
      out.Line(DescribeLogRemoved(j));
      removal_reported = true;
    }
    bool new_attempt = j.attempt() > seen_attempt;
    if (new_attempt && seen_attempt > 0) {
      out.Line(job_name + " re-queued, attempt " + std::to_string(j.attempt()));
    }
    seen_attempt = std::max(seen_attempt, j.attempt());
    if (j.status() == v1::RUNNING && (last_status != v1::RUNNING || new_attempt || j.worker_id() != last_worker)) {
      out.Line(job_name + " running on worker " + j.worker_id() + " (attempt " + std::to_string(j.attempt()) + ")");
    }
    if (j.status() == v1::QUEUED && !j.unsatisfiable().empty() && j.unsatisfiable() != last_unsat) {
      out.Line("warning: " + job_name + " cannot start yet: " + j.unsatisfiable());
    }
    last_unsat = j.unsatisfiable();
    last_status = j.status();
    last_worker = j.worker_id();
  };

  while (true) {
    v1::WatchJobRequest req;
    req.set_job_id(o.job_id);
    req.set_attempt(cur_attempt);
    req.set_offset(offset);
    req.set_follow(o.follow);
    // With attempt 0 the controller follows the job across attempts, each
    // attempt's log starting at offset 0; with an explicit attempt it stops
    // once that attempt is over.
    const bool explicit_attempt = cur_attempt != 0;
    bool got_event = false;

    Status s = client.WatchJob(req, [&](const v1::JobEvent& ev) {
      if (!got_event) {
        got_event = true;
        connected_once = true;
        outage_since.reset();
        backoff = kFirstBackoff;
        if (outage_reported) {
          out.Line("reconnected to the controller");
          outage_reported = false;
        }
      }
      if (ev.has_state()) {
        job = ev.state();
        have_job = true;
        if (!explicit_attempt && job.attempt() > cur_attempt) {
          cur_attempt = job.attempt();
          offset = 0;
        }
        on_state(job);
      } else if (ev.has_log()) {
        const v1::LogData& l = ev.log();
        if (l.attempt() != cur_attempt) {  // a new attempt's log starts afresh
          cur_attempt = l.attempt();
          offset = 0;
        }
        const std::string& d = l.data();
        int64_t end = l.offset() + static_cast<int64_t>(d.size());
        int64_t skip = std::clamp<int64_t>(offset - l.offset(), 0, static_cast<int64_t>(d.size()));
        out.Log(d.data() + skip, d.size() - static_cast<size_t>(skip));  // skip bytes already written
        offset = std::max(offset, end);
      }
      return o.follow && have_job && IsTerminal(job.status()) ? o.ended_silence : std::chrono::milliseconds(0);
    });

    if (s.code() == Code::kDeadlineExceeded && o.follow && have_job && IsTerminal(job.status())) {
      if (offset < job.log_size() && !job.has_log_removed()) {
        out.Line("warning: the log of job " + std::to_string(o.job_id) + " looks incomplete: got " +
                 std::to_string(offset) + " of " + std::to_string(job.log_size()) + " bytes of attempt " +
                 std::to_string(cur_attempt) + " (try kiln logs " + std::to_string(o.job_id) + " later)");
      }
      break;
    }

    if (s.ok()) {
      if (!o.follow || o.attempt != 0) break;  // one pass, or the one attempt asked for is over
      if (have_job && job.attempt() > cur_attempt) {
        cur_attempt = job.attempt();  // the attempt we read ended; read the new one
        offset = 0;
        continue;
      }
      if (have_job && IsTerminal(job.status())) break;
      // The stream ended early without saying why: treat it like a break.
      s = Status(Code::kUnavailable, "the controller ended the log stream early");
    }
    // UNAVAILABLE: the connection broke or the controller is restarting.
    // CANCELLED: a stopping server cancels calls in flight (we never cancel ours).
    bool retryable = s.code() == Code::kUnavailable || s.code() == Code::kCancelled;
    if (!retryable || (!connected_once && !o.retry_first_connect)) return s;

    auto now = Clock::now();
    if (!outage_since) outage_since = now;
    if (now - *outage_since > o.reconnect_for) {
      return Status(Code::kUnavailable, "gave up reconnecting after " + FormatMs(o.reconnect_for.count()) + ": " +
                                            s.message());
    }
    if (!outage_reported) {
      out.Line("lost the connection to the controller (" + s.message() + "); reconnecting");
      outage_reported = true;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }

  if (!have_job) return client.GetJob(o.job_id);
  return job;
}

}  // namespace kiln::cli
