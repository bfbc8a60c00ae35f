#include "cc/keys.h"

#include "cas/digest.h"
#include "cas/encode.h"

namespace kiln::cc {
namespace {

using cas::EncodeCount;
using cas::EncodeField;

std::string Common(const char* version, const KeyParts& p) {
  std::string out = version;
  EncodeField(out, "image", p.image);
  EncodeField(out, "compiler", p.compiler);
  EncodeField(out, "cwd", p.cwd);
  EncodeCount(out, "args", p.args.size());
  for (const auto& a : p.args) EncodeField(out, "arg", a);
  EncodeCount(out, "env", p.env.size());
  for (const auto& [k, v] : p.env) {
    EncodeField(out, "name", k);
    EncodeField(out, "value", v);
  }
  return out;
}

}  // namespace

std::string DirectKey(const KeyParts& p, const std::string& source_digest) {
  std::string out = Common("kiln-cc-direct-1\n", p);
  EncodeField(out, "source", source_digest);
  return cas::DigestOf(out).hash;
}

std::string ResultKey(const KeyParts& p, const std::string& preprocessed_digest) {
  std::string out = Common("kiln-cc-result-1\n", p);
  EncodeField(out, "preprocessed", preprocessed_digest);
  return cas::DigestOf(out).hash;
}

std::string DependResultKey(const KeyParts& p, const std::string& source_digest, const std::string& manifest_digest) {
  std::string out = Common("kiln-cc-result-depend-1\n", p);
  EncodeField(out, "source", source_digest);
  EncodeField(out, "manifest", manifest_digest);
  return cas::DigestOf(out).hash;
}

std::string CodeResultKey(const KeyParts& p, const std::string& source_digest, const std::string& code_manifest_digest) {
  std::string out = Common("kiln-cc-result-code-1\n", p);
  EncodeField(out, "source", source_digest);
  EncodeField(out, "code", code_manifest_digest);
  return cas::DigestOf(out).hash;
}

std::string CompilerIdentity(const std::string& binary_digest, const std::string& version_text) {
  std::string out = "kiln-cc-compiler-1\n";
  EncodeField(out, "binary", binary_digest);
  EncodeField(out, "version", version_text);
  return cas::DigestOf(out).hash;
}

std::string ManifestDigest(const std::map<std::string, std::string>& deps) {
  std::string out = "kiln-cc-manifest-1\n";
  EncodeCount(out, "deps", deps.size());
  for (const auto& [k, v] : deps) {
    EncodeField(out, "path", k);
    EncodeField(out, "value", v);
  }
  return cas::DigestOf(out).hash;
}

}  // namespace kiln::cc
