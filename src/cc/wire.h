#pragma once
// The compile record (cc/record.h) on the compile cache's socket (cc.proto,
// kiln-cc <-> worker): the one conversion each way. Field for field; a
// message from kiln-cc is untrusted and is checked by whoever reads it.
// The To* functions take the record by value and move its bytes into the
// message: pass an rvalue where the record is not needed after.

#include "cc/record.h"
#include "kiln/cc/v1/cc.pb.h"

namespace kiln::cc {

void ToWire(KeyParts in, v1::KeyParts* out);
KeyParts FromWire(const v1::KeyParts& in);

void ToWire(CompileResult in, v1::CompileResult* out);
CompileResult FromWire(const v1::CompileResult& in);

void ToWire(CompileManifest in, v1::Manifest* out);
CompileManifest FromWire(const v1::Manifest& in);

// key, parts, deps, result and manifest_only; the object's bytes travel
// beside them (v1::Store::object) and are the caller's.
void ToWire(CompileEntry in, v1::Store* out);
CompileEntry FromWire(const v1::Store& in);

}  // namespace kiln::cc
