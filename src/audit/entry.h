#pragma once
// The audit trail (sql/015_audit.sql): one row per change made through the
// API — who, from which address, what, when, and the change. The store that
// makes a change writes its row in the same transaction (audit/write.h), so
// a caller hands it only who it is; the store names the action, the target
// and what changed, since it alone knows what it did (docs/architecture.md,
// "Audit trail"). Plain types, no libpqxx.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::audit {

// Who makes a change, and from where.
struct Who {
  // "token 1a2b3c4d5e6f", "worker host-1a2b3c", "join token 1a2b3c4d5e6f"
  // (enrolment: the store sets it), "controller <id>", "local <user>".
  std::string actor;
  // The peer as gRPC gives it ("ipv4:10.0.0.7:51234"); "local" for the
  // controller's own commands on its host.
  std::string address;
};

// One row to write: built by the store that makes the change.
struct Entry {
  Entry(Who who, std::string action, std::string project, std::string target);

  Who who;
  std::string action;         // a dotted verb: job.submit, project.config, token.create, ...
  std::string project;        // empty: not bound to one project
  std::string target;         // "job 17", "token 1a2b3c4d5e6f", "image sha256:<hex>"

  // What changed: a JSON object of the keys set, sorted.
  std::string change() const;

  // Adds `key` to the change: a string (bytes that are not UTF-8 are
  // replaced, a NUL is written \x00: jsonb holds none), a number, a list of
  // strings, or a JSON text (taken as a string if it does not parse).
  // Returns *this.
  Entry& Set(std::string_view key, std::string_view value);
  Entry& Set(std::string_view key, int64_t value);
  Entry& Set(std::string_view key, const std::vector<std::string>& values);
  Entry& SetJson(std::string_view key, std::string_view json);

 private:
  std::map<std::string, std::string, std::less<>> fields_;  // key -> its value as JSON text
};

// A row as read back, newest first.
struct Record {
  int64_t id = 0;
  int64_t at_ms = 0;  // unix ms
  std::string actor, address, action, project, target;
  std::string change;  // a JSON object
};

// What to list: one project's rows (empty: every row), from since_ms on
// (0: all kept), at most `limit`, older than the row before_id (0: from the
// newest).
struct Filter {
  std::string project;
  int64_t since_ms = 0;
  int limit = 100;
  int64_t before_id = 0;
};

}  // namespace kiln::audit
