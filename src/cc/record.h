#pragma once
// A compile cache record, the one shape every part of kiln works with:
// kiln-cc (static, protobuf-lite), the worker and the controller. Each wire
// has one conversion to and from it, and nothing else copies between wires:
//   cc.proto (kiln-cc <-> worker)        cc/wire.h
//   kiln.proto v1 (worker <-> controller) api/compile_convert.h
//   the database (columns, parts JSON)   cache/compile_json.h, cache/compile_store.cc
// Names follow the wires and the tables (stdout, stderr, key). No protobuf
// here: this header is for every side.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cas/digest.h"

namespace kiln::cc {

// What a compile was asked. The keys (cc/keys.h) hash image, compiler, cwd,
// args and env, with a digest they are given; the rest names the compile in
// messages and miss reasons.
struct KeyParts {
  std::string image;                       // "sha256:<hex>" the job runs in
  std::string compiler;                    // CompilerIdentity (hex)
  std::string cwd;                         // absolute, inside the sandbox
  std::vector<std::string> args;           // after the compiler's name, verbatim
  std::map<std::string, std::string> env;  // the CompilerEnvironment variables that are set
  std::string source;                      // as given on the command line
  std::string output;
  std::string source_digest;               // "<hex>/<size>"
  std::string compiler_path;               // where the compiler was found on PATH

  bool operator==(const KeyParts&) const = default;
};

// A cached compile, under its result key. stdout and stderr are the
// standard streams' names on every wire (glibc defines the macros as
// themselves, so they name members too).
struct CompileResult {
  std::string key;         // the result key (hex)
  cas::Digest object;      // the object file, in CAS
  std::string depfile;     // the dependency file the compile wrote, if the build asked for one
  std::string stdout;      // bytes, replayed on a hit
  std::string stderr;      // diagnostics, bytes
  int64_t compile_ms = 0;  // what the compile took when it ran

  bool operator==(const CompileResult&) const = default;
};

// A manifest as read back: which dependencies led to which result.
struct CompileManifest {
  int64_t id = 0;           // reported with a hit (keeps the manifest)
  std::string deps_packed;  // cc::PackDeps
  CompileResult result;

  bool operator==(const CompileManifest&) const = default;
};

// What a store writes: a result (unless manifest_only: it exists already,
// found by its result key) and a manifest for it under the direct key.
struct CompileEntry {
  std::string key;  // the direct key (hex)
  KeyParts parts;
  std::map<std::string, std::string> deps;  // the manifest (cc/deps.h)
  CompileResult result;
  bool manifest_only = false;

  bool operator==(const CompileEntry&) const = default;
};

}  // namespace kiln::cc
