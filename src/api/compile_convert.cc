#include "api/compile_convert.h"

#include <utility>

#include "cc/parts_fields.h"

namespace kiln::api {

void ToProto(cc::KeyParts in, v1::CompileParts* out) {
  cc::PartsToMessage(std::move(in), out);
}

cc::KeyParts FromProto(const v1::CompileParts& in) {
  return cc::PartsFromMessage(in);
}

void ToProto(cc::CompileResult in, v1::CompileResult* out) {
  out->set_key(std::move(in.key));
  out->mutable_object()->set_hash(std::move(in.object.hash));
  out->mutable_object()->set_size(in.object.size);
  out->set_depfile(std::move(in.depfile));
  out->set_stdout(std::move(in.stdout));
  out->set_stderr(std::move(in.stderr));
  out->set_compile_ms(in.compile_ms);
}

cc::CompileResult FromProto(const v1::CompileResult& in) {
  cc::CompileResult r;
  r.key = in.key();
  r.object = {in.object().hash(), in.object().size()};
  r.depfile = in.depfile();
  r.stdout = in.stdout();
  r.stderr = in.stderr();
  r.compile_ms = in.compile_ms();
  return r;
}

void ToProto(cc::CompileManifest in, v1::CompileManifest* out) {
  out->set_id(in.id);
  out->set_deps_packed(std::move(in.deps_packed));
  ToProto(std::move(in.result), out->mutable_result());
}

cc::CompileManifest FromProto(const v1::CompileManifest& in) {
  return {in.id(), in.deps_packed(), FromProto(in.result())};
}

void ToProto(cc::CompileEntry in, v1::StoreCompileRequest* out) {
  out->set_key(std::move(in.key));
  ToProto(std::move(in.parts), out->mutable_parts());
  for (auto& [k, v] : in.deps) (*out->mutable_deps())[k] = std::move(v);
  ToProto(std::move(in.result), out->mutable_result());
  out->set_manifest_only(in.manifest_only);
}

cc::CompileEntry FromProto(const v1::StoreCompileRequest& in) {
  cc::CompileEntry e;
  e.key = in.key();
  e.parts = FromProto(in.parts());
  e.deps = std::map<std::string, std::string>(in.deps().begin(), in.deps().end());
  e.result = FromProto(in.result());
  e.manifest_only = in.manifest_only();
  return e;
}

std::vector<std::pair<const char*, int64_t>> UnitsByOutcome(const v1::CompileStats& n) {
  return {{"hit", n.hits()},
          {"hit_preprocessed", n.hits_preprocessed()},
          {"miss", n.misses()},
          {"fallback", n.fallbacks()},
          {"failed", n.failed()}};
}

}  // namespace kiln::api
