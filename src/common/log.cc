#include "common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/text.h"

namespace kiln {

namespace {

// The message with its control bytes as \xNN: one record is one line, so a
// string from a client or a worker (a name, a reason, an error it caused)
// can neither start a line that looks like the daemon's nor hide in a NUL.
class EscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string_view v(msg.payload.data(), msg.payload.size());
    if (!HasControl(v)) {
      dest.append(v.data(), v.data() + v.size());
      return;
    }
    std::string p = Printable(v, v.size());
    dest.append(p.data(), p.data() + p.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<EscapedMessage>(); }
};

}  // namespace

std::unique_ptr<spdlog::formatter> LogFormatter() {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<EscapedMessage>('*').set_pattern("%Y-%m-%d %H:%M:%S.%e %n[%P] %l: %*");
  return f;
}

bool InitLogging(const std::string& program, const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_logger_mt(program);
  spdlog::set_default_logger(logger);
  spdlog::set_formatter(LogFormatter());
  spdlog::set_level(lvl);
  spdlog::flush_on(spdlog::level::info);
  return true;
}

}  // namespace kiln
