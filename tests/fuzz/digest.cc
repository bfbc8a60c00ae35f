// Digests as clients and the database give them: cas::ParseDigest
// ("sha256:<hex>/<size>" or "<hex>/<size>"), cas::CheckDigest (a proto's
// hash and size), oci::ParseImageRef, and a tree entry's hstore value
// (cas::EntryFromValue).

#include <fuzzer/FuzzedDataProvider.h>

#include "cas/digest.h"
#include "cas/oci.h"
#include "cas/tree.h"
#include "fuzz.h"

using namespace kiln;
using kiln::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  auto d = cas::ParseDigest(in);
  if (d.ok()) {
    Require(cas::CheckDigest(*d, "digest").ok(), "a parsed digest fails CheckDigest");
    auto again = cas::ParseDigest(d->ToString());
    Require(again.ok() && *again == *d, "ParseDigest(ToString()) differs");
    auto key = cas::ParseDigest(d->Key());
    Require(key.ok() && *key == *d, "ParseDigest(Key()) differs");
  } else {
    fuzz::RequireClearError(d.status(), "ParseDigest");
  }

  auto ref = cas::oci::ParseImageRef(in);
  if (ref.ok()) Require(cas::IsHash(*ref), "ParseImageRef returned no hash");
  else fuzz::RequireClearError(ref.status(), "ParseImageRef");

  // An entry value as the tree store reads it from hstore: a broken one is an
  // Internal error, never a crash; a good one round-trips.
  auto e = cas::EntryFromValue("n", in);
  if (e.ok()) {
    auto back = cas::EntryFromValue("n", cas::EntryValue(*e));
    Require(back.ok() && *back == *e, "EntryFromValue(EntryValue()) differs");
  } else {
    fuzz::RequireClearError(e.status(), "EntryFromValue");
  }

  // The hash and size of a v1::Digest, each from the client.
  FuzzedDataProvider p(data, size);
  cas::Digest raw;
  raw.size = p.ConsumeIntegral<int64_t>();
  raw.hash = p.ConsumeRemainingBytesAsString();
  fuzz::RequireOkOrClear(cas::CheckDigest(raw, "digest"), "CheckDigest");
  return 0;
}
