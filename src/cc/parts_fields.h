#pragma once
// The key parts' fields, read from and written to a protobuf message. Both
// wires of a compile record (cc.proto's KeyParts, kiln.proto's CompileParts)
// name these fields alike, so one template serves both; each wire's
// conversion (cc/wire.cc, api/compile_convert.cc) calls it.

#include <map>
#include <string>
#include <utility>

#include "cc/record.h"

namespace kiln::cc {

template <typename Msg>
void PartsToMessage(KeyParts in, Msg* out) {
  out->set_image(std::move(in.image));
  out->set_compiler(std::move(in.compiler));
  out->set_cwd(std::move(in.cwd));
  for (auto& a : in.args) out->add_args(std::move(a));
  for (auto& [k, v] : in.env) (*out->mutable_env())[k] = std::move(v);
  out->set_source(std::move(in.source));
  out->set_output(std::move(in.output));
  out->set_source_digest(std::move(in.source_digest));
  out->set_compiler_path(std::move(in.compiler_path));
}

template <typename Msg>
KeyParts PartsFromMessage(const Msg& in) {
  KeyParts p;
  p.image = in.image();
  p.compiler = in.compiler();
  p.cwd = in.cwd();
  p.args.assign(in.args().begin(), in.args().end());
  p.env = std::map<std::string, std::string>(in.env().begin(), in.env().end());
  p.source = in.source();
  p.output = in.output();
  p.source_digest = in.source_digest();
  p.compiler_path = in.compiler_path();
  return p;
}

}  // namespace kiln::cc
