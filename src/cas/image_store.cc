#include "cas/image_store.h"

#include <nlohmann/json.hpp>

#include "audit/write.h"
#include "db/pool.h"

namespace kiln::cas {

namespace {

using nlohmann::json;

constexpr const char* kCols =
    "digest, manifest_size, name, config, layers::text, size,"
    " (extract(epoch FROM imported_at) * 1000)::bigint";

Result<ImageRow> RowOf(const pqxx::row& r) {
  ImageRow i;
  i.hash = r[0].as<std::string>();
  i.manifest_size = r[1].as<int64_t>();
  i.name = r[2].as<std::string>();
  auto c = ParseDigest(r[3].as<std::string>());
  if (!c.ok()) return c.status();
  i.manifest.config = *c;
  for (const auto& l : json::parse(r[4].as<std::string>())) {
    auto d = ParseDigest(l.at("digest").get<std::string>());
    if (!d.ok()) return d.status();
    i.manifest.layers.push_back({*d, l.at("media_type").get<std::string>()});
  }
  i.size = r[5].as<int64_t>();
  i.imported_at_ms = r[6].as<int64_t>();
  return i;
}

Status NotImported(const std::string& hash) {
  return NotFound("image sha256:" + hash + " is not imported; import it with: kiln image import PATH");
}

}  // namespace

ImageStore::ImageStore(std::string db_url, size_t pool_size)
    : pool_(std::make_unique<db::Pool>(std::move(db_url), pool_size)) {
  pool_->AddStatements({
      {"put_image", std::string("INSERT INTO images (digest, manifest_size, name, config, layers, size)"
                                " VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (digest) DO UPDATE"
                                " SET name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name"
                                " ELSE images.name END RETURNING ") + kCols},
      {"get_image", std::string("SELECT ") + kCols + " FROM images WHERE digest = $1"},
      {"list_images", std::string("SELECT ") + kCols + " FROM images ORDER BY imported_at DESC, digest"},
      {"image_users", "SELECT count(*) FROM build_jobs WHERE status IN ('queued', 'setup', 'running')"
                      " AND spec->>'image' = $1"},
      {"remove_image", std::string("DELETE FROM images WHERE digest = $1 RETURNING ") + kCols},
      {"image_name_for_update", "SELECT name FROM images WHERE digest = $1 FOR UPDATE"},
      audit::InsertStatement(),
  });
}
ImageStore::~ImageStore() = default;

Result<ImageRow> ImageStore::Put(const std::string& hash, int64_t manifest_size, const std::string& name,
                                 const oci::Manifest& m, const audit::Who& who) {
  json layers = json::array();
  int64_t size = 0;
  for (const auto& l : m.layers) {
    layers.push_back({{"digest", l.digest.Key()}, {"media_type", l.media_type}});
    size += l.digest.size;
  }
  return pool_->Query("cannot record the image", [&](pqxx::connection& c) -> Result<ImageRow> {
    pqxx::work tx(c);
    auto old = tx.exec_prepared("image_name_for_update", hash);
    auto r = tx.exec_prepared("put_image", hash, manifest_size, name, m.config.Key(), layers.dump(), size);
    auto row = RowOf(r[0]);
    if (!row.ok()) return row;
    // Registered, or renamed; registering again as it was changes nothing.
    audit::Entry e(who, "image.register", "", "image sha256:" + hash);
    e.Set("name", row->name);
    if (old.empty()) {
      e.Set("layers", static_cast<int64_t>(m.layers.size())).Set("size", size);
      audit::Write(tx, e);
    } else if (old[0][0].as<std::string>() != row->name) {
      audit::Write(tx, e.Set("old_name", old[0][0].as<std::string>()));
    }
    tx.commit();
    return row;
  });
}

Result<ImageRow> ImageStore::Get(const std::string& hash) {
  return pool_->Query("cannot read the image", [&](pqxx::connection& c) -> Result<ImageRow> {
    pqxx::read_transaction tx(c);
    auto r = tx.exec_prepared("get_image", hash);
    if (r.empty()) return NotImported(hash);
    return RowOf(r[0]);
  });
}

Result<std::vector<ImageRow>> ImageStore::List() {
  return pool_->Query("cannot list images", [&](pqxx::connection& c) -> Result<std::vector<ImageRow>> {
    pqxx::read_transaction tx(c);
    std::vector<ImageRow> out;
    for (const auto& row : tx.exec_prepared("list_images")) {
      auto i = RowOf(row);
      if (!i.ok()) return i.status();
      out.push_back(std::move(*i));
    }
    return out;
  });
}

Result<ImageRow> ImageStore::Remove(const std::string& hash, const audit::Who& who) {
  return pool_->Query("cannot remove the image", [&](pqxx::connection& c) -> Result<ImageRow> {
    pqxx::work tx(c);
    auto users = tx.exec_prepared("image_users", "sha256:" + hash);
    if (users[0][0].as<int64_t>() > 0)
      return FailedPrecondition("image sha256:" + hash + " is used by " + users[0][0].as<std::string>() +
                                " job(s) that have not ended; remove it once they did");
    auto r = tx.exec_prepared("remove_image", hash);
    if (r.empty()) return NotImported(hash);
    auto row = RowOf(r[0]);
    if (!row.ok()) return row;
    audit::Write(tx, audit::Entry(who, "image.remove", "", "image sha256:" + hash).Set("name", row->name));
    tx.commit();
    return row;
  });
}

}  // namespace kiln::cas
