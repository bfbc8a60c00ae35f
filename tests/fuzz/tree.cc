// Directory nodes as UploadTrees and GetTree receive them: a v1::Directory
// through api::FromProto, cas::CheckDirectory and Normalize, the canonical
// encoding and the hstore form of entries, then a tree of such nodes through
// cas::CheckNodeSizes, cas::Flatten (what a submit and a fetch check) and
// cas::DiffDirectories. Nodes are found by a hash the input picks, so a
// tree may share nodes or even loop.

#include <fuzzer/FuzzedDataProvider.h>

#include <unordered_map>
#include <vector>

#include "api/convert.h"
#include "cas/tree.h"
#include "fuzz.h"

using namespace kiln;
using kiln::fuzz::Require;

namespace {

constexpr int kMaxNodes = 6;

std::string NodeHash(int i) { return std::string(63, 'a') + "0123456789abcdef"[i]; }

v1::Directory MakeNode(FuzzedDataProvider& p) {
  v1::Directory d;
  const int n = p.ConsumeIntegralInRange(0, 12);
  for (int i = 0; i < n; ++i) {
    auto* e = d.add_entries();
    e->set_name(p.ConsumeRandomLengthString(40));
    e->set_kind(static_cast<v1::EntryKind>(p.ConsumeIntegralInRange(0, 3)));
    switch (p.ConsumeIntegralInRange(0, 3)) {
      case 0: break;  // no digest
      case 1:         // another node of this tree (or this one)
        e->mutable_digest()->set_hash(NodeHash(p.ConsumeIntegralInRange(0, kMaxNodes - 1)));
        e->mutable_digest()->set_size(p.ConsumeIntegralInRange<int64_t>(0, 400));
        break;
      case 2:
        e->mutable_digest()->set_hash(p.ConsumeRandomLengthString(70));
        e->mutable_digest()->set_size(p.ConsumeIntegral<int64_t>());
        break;
      default:
        e->mutable_digest()->set_hash(std::string(64, "0123456789abcdef"[p.ConsumeIntegralInRange(0, 15)]));
        e->mutable_digest()->set_size(p.ConsumeIntegralInRange<int64_t>(-1, 1 << 20));
    }
    e->set_executable(p.ConsumeBool());
    if (p.ConsumeBool()) e->set_target(p.ConsumeRandomLengthString(40));
  }
  return d;
}

// A node that passed CheckDirectory: its encodings are stable and round-trip.
void CheckValidNode(const cas::Directory& dir) {
  Require(cas::Encode(dir) == cas::Encode(dir), "Encode is not deterministic");
  v1::Directory again;
  api::ToProto(dir, &again);
  auto back = api::FromProto(again, "again");
  Require(back.ok() && *back == dir, "ToProto/FromProto does not round-trip");
  for (const auto& e : dir.entries) {
    auto v = cas::EntryFromValue(e.name, cas::EntryValue(e));
    Require(v.ok() && *v == e, "EntryValue/EntryFromValue does not round-trip");
  }
  cas::Directory sorted = dir;
  Require(cas::Normalize(&sorted, "").ok() && sorted == dir, "Normalize changed a valid node");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  const int n_nodes = p.ConsumeIntegralInRange(1, kMaxNodes);
  std::vector<std::pair<cas::Digest, cas::Directory>> nodes;
  for (int i = 0; i < n_nodes; ++i) {
    v1::Directory msg = MakeNode(p);
    auto dir = api::FromProto(msg, "node");
    if (!dir.ok()) {
      fuzz::RequireClearError(dir.status(), "FromProto");
      continue;
    }
    Status checked = cas::CheckDirectory(*dir, i == 0 ? "" : "a/b");
    if (checked.ok()) {
      CheckValidNode(*dir);
    } else {
      fuzz::RequireClearError(checked, "CheckDirectory");
      // A directory being built is sorted first; it may then pass.
      cas::Directory copy = *dir;
      Status normalized = cas::Normalize(&copy, "");
      if (!normalized.ok()) {
        fuzz::RequireClearError(normalized, "Normalize");
        continue;
      }
      CheckValidNode(copy);
      *dir = std::move(copy);
    }
    nodes.push_back({cas::Digest{NodeHash(i), static_cast<int64_t>(cas::Encode(*dir).size())}, std::move(*dir)});
  }
  if (nodes.empty()) return 0;

  const cas::Digest root{nodes[0].first.hash, p.ConsumeBool() ? nodes[0].first.size : p.ConsumeIntegral<int64_t>()};
  fuzz::RequireOkOrClear(cas::CheckNodeSizes(root, nodes), "CheckNodeSizes");

  std::unordered_map<std::string, const cas::Directory*> by_hash;
  for (const auto& [d, dir] : nodes) by_hash.emplace(d.hash, &dir);
  const int64_t max_entries = p.ConsumeIntegralInRange<int64_t>(0, 2000);
  auto flat = cas::Flatten(root, by_hash, max_entries);
  if (flat.ok()) {
    Require(static_cast<int64_t>(flat->size()) <= max_entries, "Flatten returned more than max_entries");
    for (const auto& pe : *flat) {
      Require(pe.path.size() <= 4095, "Flatten returned a path over 4095 bytes");
      Require(cas::CheckRelativePath(pe.path, "path").ok(), "Flatten returned a bad path");
      if (pe.entry.kind == cas::Kind::kSymlink) {
        auto slash = pe.path.rfind('/');
        std::string dir = slash == std::string::npos ? "" : pe.path.substr(0, slash);
        Require(cas::LinkStaysInside(dir, pe.entry.target), "Flatten passed a symlink that leaves the tree");
      }
    }
  } else {
    fuzz::RequireClearError(flat.status(), "Flatten");
  }

  if (nodes.size() >= 2) {
    std::vector<cas::Change> changes;
    std::vector<std::tuple<std::string, cas::Digest, cas::Digest>> descend;
    cas::DiffDirectories("d", nodes[0].second, nodes[1].second, &changes, &descend);
    for (const auto& c : changes) Require(c.before || c.after, "a change with neither side");
  }
  return 0;
}
