// The compile record (cc/record.h) through each of its conversions: the
// socket (cc.proto), the API (kiln.proto v1) and the parts JSON of the
// database. A fully populated record must come back equal, so a field that
// one conversion drops fails here.

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "api/compile_convert.h"
#include "cache/compile_json.h"
#include "cc/record.h"
#include "cc/wire.h"

namespace kiln {
namespace {

using google::protobuf::util::MessageDifferencer;
using std::string_literals::operator""s;

// Bytes that text handling would spoil: a NUL, a byte that is not UTF-8.
const std::string kBytes = "a\0b\xff"s;

// Every field set, each to a value no other field has.
cc::CompileEntry Full() {
  cc::CompileEntry e;
  e.key = std::string(64, '1');
  e.parts.image = "sha256:" + std::string(64, 'a');
  e.parts.compiler = std::string(64, 'c');
  e.parts.cwd = "/src/sub";
  e.parts.args = {"-O2", "-c", "a.c", "-o", "a.o"};
  e.parts.env = {{"CPATH", "/src/inc"}, {"LANG", "C.UTF-8"}};
  e.parts.source = "a.c";
  e.parts.output = "a.o";
  e.parts.source_digest = std::string(64, 'd') + "/10";
  e.parts.compiler_path = "/usr/bin/gcc";
  e.deps = {{"/src/sub/a.c", "f:" + std::string(64, 'd') + "/10"}, {"/usr/include/stdio.h", "i"}};
  e.result.key = std::string(64, '3');
  e.result.object = {std::string(64, '4'), 1234};
  e.result.depfile = "a.o: a.c " + kBytes;
  e.result.stdout = "out " + kBytes;
  e.result.stderr = "warning: " + kBytes;
  e.result.compile_ms = 567;
  e.manifest_only = true;
  return e;
}

cc::CompileManifest FullManifest() { return {89, "packed " + kBytes, Full().result}; }

TEST(CompileRecord, TheTestRecordSetsEveryField) {
  // Guards the tests below: a field left at its default would pass a
  // conversion that drops it.
  const cc::CompileEntry e = Full();
  const cc::KeyParts& p = e.parts;
  for (const std::string* s : {&e.key, &p.image, &p.compiler, &p.cwd, &p.source, &p.output, &p.source_digest,
                               &p.compiler_path, &e.result.key, &e.result.object.hash, &e.result.depfile,
                               &e.result.stdout, &e.result.stderr})
    EXPECT_FALSE(s->empty());
  EXPECT_GT(p.args.size(), 1u);
  EXPECT_GT(p.env.size(), 1u);
  EXPECT_GT(e.deps.size(), 1u);
  EXPECT_NE(e.result.object.size, 0);
  EXPECT_NE(e.result.compile_ms, 0);
  EXPECT_TRUE(e.manifest_only);
  EXPECT_NE(FullManifest().id, 0);
  EXPECT_FALSE(FullManifest().deps_packed.empty());
}

template <class M>
M Reparsed(const M& m) {
  M out;
  EXPECT_TRUE(out.ParseFromString(m.SerializeAsString()));
  return out;
}

// ---- cc.proto (kiln-cc <-> worker) ----

TEST(CompileRecordWire, AnEntryComesBackFieldForField) {
  cc::v1::Store wire;
  cc::ToWire(Full(), &wire);
  EXPECT_TRUE(wire.object().empty()) << "the object's bytes are the caller's";
  EXPECT_EQ(cc::FromWire(Reparsed(wire)), Full());
}

TEST(CompileRecordWire, AManifestComesBackFieldForField) {
  cc::v1::Manifest wire;
  cc::ToWire(FullManifest(), &wire);
  EXPECT_EQ(cc::FromWire(Reparsed(wire)), FullManifest());
}

TEST(CompileRecordWire, PartsAndResultsAloneComeBack) {
  cc::v1::KeyParts parts;  // LookupReply.previous
  cc::ToWire(Full().parts, &parts);
  EXPECT_EQ(cc::FromWire(Reparsed(parts)), Full().parts);
  cc::v1::CompileResult result;  // LookupResultReply.result
  cc::ToWire(Full().result, &result);
  EXPECT_EQ(cc::FromWire(Reparsed(result)), Full().result);
}

TEST(CompileRecordWire, AMessageComesBackByteForByte) {
  // The other way round: each field of the message, set by hand, survives
  // a trip through the record (one map entry each: their order in the
  // serialized bytes is then fixed).
  cc::v1::Store in;
  in.set_key("k");
  auto* p = in.mutable_parts();
  p->set_image("i");
  p->set_compiler("c");
  p->set_cwd("/w");
  p->add_args("-c");
  (*p->mutable_env())["LANG"] = "C";
  p->set_source("s.c");
  p->set_output("s.o");
  p->set_source_digest("d/1");
  p->set_compiler_path("/bin/cc");
  (*in.mutable_deps())["/w/s.c"] = "f:x/1";
  auto* r = in.mutable_result();
  r->set_key("r");
  r->set_object_hash("h");
  r->set_object_size(7);
  r->set_depfile("dep");
  r->set_stdout("out");
  r->set_stderr("err");
  r->set_compile_ms(9);
  in.set_manifest_only(true);
  cc::v1::Store out;
  cc::ToWire(cc::FromWire(in), &out);
  EXPECT_EQ(out.SerializeAsString(), in.SerializeAsString());
  cc::v1::Manifest m;
  m.set_id(3);
  m.set_deps_packed("packed");
  *m.mutable_result() = in.result();
  cc::v1::Manifest m2;
  cc::ToWire(cc::FromWire(m), &m2);
  EXPECT_EQ(m2.SerializeAsString(), m.SerializeAsString());
}

// ---- kiln.proto v1 (worker <-> controller) ----

// Every field of `m` and of the messages in it is set (not its default),
// except those named in `except` (by full name).
void ExpectEveryFieldSet(const google::protobuf::Message& m, const std::set<std::string>& except = {}) {
  const auto* d = m.GetDescriptor();
  const auto* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    if (except.count(f->full_name())) continue;
    const bool set = f->is_repeated() ? r->FieldSize(m, f) > 0 : r->HasField(m, f);
    EXPECT_TRUE(set) << f->full_name() << " is not set: a conversion drops it";
    if (set && !f->is_repeated() && f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE)
      ExpectEveryFieldSet(r->GetMessage(m, f), except);
  }
}

TEST(CompileRecordApi, AStoreRequestComesBackFieldForField) {
  v1::StoreCompileRequest wire;
  api::ToProto(Full(), &wire);
  // job_id and attempt name the job's run: the caller's, not the record's.
  ExpectEveryFieldSet(wire, {"kiln.v1.StoreCompileRequest.job_id", "kiln.v1.StoreCompileRequest.attempt"});
  EXPECT_EQ(api::FromProto(Reparsed(wire)), Full());
}

TEST(CompileRecordApi, AManifestComesBackFieldForField) {
  v1::CompileManifest wire;
  api::ToProto(FullManifest(), &wire);
  ExpectEveryFieldSet(wire);
  EXPECT_EQ(api::FromProto(Reparsed(wire)), FullManifest());
}

TEST(CompileRecordApi, PartsAndResultsAloneComeBack) {
  v1::CompileParts parts;  // LookupCompileResponse.previous
  api::ToProto(Full().parts, &parts);
  ExpectEveryFieldSet(parts);
  EXPECT_EQ(api::FromProto(Reparsed(parts)), Full().parts);
  v1::CompileResult result;  // LookupCompileResultResponse.result
  api::ToProto(Full().result, &result);
  ExpectEveryFieldSet(result);
  EXPECT_EQ(api::FromProto(Reparsed(result)), Full().result);
}

TEST(CompileRecordApi, AMessageComesBackUnchanged) {
  v1::StoreCompileRequest in;
  api::ToProto(Full(), &in);
  v1::StoreCompileRequest out;
  api::ToProto(api::FromProto(in), &out);
  EXPECT_TRUE(MessageDifferencer::Equals(out, in)) << out.DebugString();
}

// ---- the database: compile_manifests.parts ----

TEST(CompileRecordJson, PartsComeBackFieldForField) {
  auto text = cache::PartsToJson(Full().parts);
  ASSERT_TRUE(text.ok()) << text.status().message();
  EXPECT_EQ(cache::PartsFromJson(*text), Full().parts);
}

TEST(CompileRecordJson, TheStoredTextIsPinned) {
  // Rows written by earlier versions are read back: the keys never change.
  cc::KeyParts p;
  p.image = "i";
  p.compiler = "c";
  p.cwd = "/w";
  p.args = {"-c", "s.c"};
  p.env = {{"LANG", "C"}};
  p.source = "s.c";
  p.output = "s.o";
  p.source_digest = "d/1";
  p.compiler_path = "/bin/cc";
  const std::string text =
      R"({"args":["-c","s.c"],"compiler":"c","compiler_path":"/bin/cc","cwd":"/w","env":{"LANG":"C"},)"
      R"("image":"i","output":"s.o","source":"s.c","source_digest":"d/1"})";
  EXPECT_EQ(cache::PartsToJson(p).value(), text);
  EXPECT_EQ(cache::PartsFromJson(text), p);
}

TEST(CompileRecordJson, BadTextIsRefusedOrReadAsFarAsItGoes) {
  cc::KeyParts p;
  p.args = {"\xff"};
  EXPECT_EQ(cache::PartsToJson(p).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(cache::PartsFromJson("not json"), cc::KeyParts{});
  EXPECT_EQ(cache::PartsFromJson("{}"), cc::KeyParts{});
}

// ---- all of them, as a store travels: kiln-cc, worker, controller, table ----

TEST(CompileRecord, AStoreKeepsEveryFieldFromKilnCcToTheTable) {
  cc::v1::Store socket;
  cc::ToWire(Full(), &socket);
  v1::StoreCompileRequest api;
  api::ToProto(cc::FromWire(Reparsed(socket)), &api);
  cc::CompileEntry at_controller = api::FromProto(Reparsed(api));
  EXPECT_EQ(at_controller, Full());
  auto text = cache::PartsToJson(at_controller.parts);
  ASSERT_TRUE(text.ok());
  // And a previous compile back to kiln-cc: table, controller, worker.
  v1::CompileParts previous;
  api::ToProto(cache::PartsFromJson(*text), &previous);
  cc::v1::KeyParts to_kiln_cc;
  cc::ToWire(api::FromProto(Reparsed(previous)), &to_kiln_cc);
  EXPECT_EQ(cc::FromWire(Reparsed(to_kiln_cc)), Full().parts);
}

}  // namespace
}  // namespace kiln
