#include "cc/wire.h"

#include <utility>

#include "cc/parts_fields.h"

namespace kiln::cc {

void ToWire(KeyParts in, v1::KeyParts* out) {
  PartsToMessage(std::move(in), out);
}

KeyParts FromWire(const v1::KeyParts& in) {
  return PartsFromMessage(in);
}

void ToWire(CompileResult in, v1::CompileResult* out) {
  out->set_key(std::move(in.key));
  out->set_object_hash(std::move(in.object.hash));
  out->set_object_size(in.object.size);
  out->set_depfile(std::move(in.depfile));
  out->set_stdout(std::move(in.stdout));
  out->set_stderr(std::move(in.stderr));
  out->set_compile_ms(in.compile_ms);
}

CompileResult FromWire(const v1::CompileResult& in) {
  CompileResult r;
  r.key = in.key();
  r.object = {in.object_hash(), in.object_size()};
  r.depfile = in.depfile();
  r.stdout = in.stdout();
  r.stderr = in.stderr();
  r.compile_ms = in.compile_ms();
  return r;
}

void ToWire(CompileManifest in, v1::Manifest* out) {
  out->set_id(in.id);
  out->set_deps_packed(std::move(in.deps_packed));
  ToWire(std::move(in.result), out->mutable_result());
}

CompileManifest FromWire(const v1::Manifest& in) {
  return {in.id(), in.deps_packed(), FromWire(in.result())};
}

void ToWire(CompileEntry in, v1::Store* out) {
  out->set_key(std::move(in.key));
  ToWire(std::move(in.parts), out->mutable_parts());
  for (auto& [k, v] : in.deps) (*out->mutable_deps())[k] = std::move(v);
  ToWire(std::move(in.result), out->mutable_result());
  out->set_manifest_only(in.manifest_only);
}

CompileEntry FromWire(const v1::Store& in) {
  CompileEntry e;
  e.key = in.key();
  e.parts = FromWire(in.parts());
  e.deps = std::map<std::string, std::string>(in.deps().begin(), in.deps().end());
  e.result = FromWire(in.result());
  e.manifest_only = in.manifest_only();
  return e;
}

}  // namespace kiln::cc
