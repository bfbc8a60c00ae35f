#include "auth/secrets.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "auth/x509.h"
#include "common/util.h"

namespace kiln::auth {
namespace {

constexpr std::string_view kMagic = "ks1";
constexpr size_t kKeyBytes = 32, kKeyIdBytes = 4, kNonceBytes = 12, kTagBytes = 16;
constexpr size_t kHeader = kMagic.size() + kKeyIdBytes + kNonceBytes;

std::string KeyIdBytes(const std::string& key) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), md);
  return std::string(reinterpret_cast<const char*>(md), kKeyIdBytes);
}

void PutLength(std::string& out, size_t n) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
}

// The plaintext: for each (name, value), both length-prefixed (4 bytes, big-endian).
std::string Encode(const std::map<std::string, std::string>& values) {
  std::string out;
  for (const auto& [k, v] : values) {
    PutLength(out, k.size());
    out += k;
    PutLength(out, v.size());
    out += v;
  }
  return out;
}

std::optional<std::map<std::string, std::string>> Decode(std::string_view in) {
  std::map<std::string, std::string> out;
  auto take = [&](std::string& field) {
    if (in.size() < 4) return false;
    size_t n = 0;
    for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<unsigned char>(in[static_cast<size_t>(i)]);
    in.remove_prefix(4);
    if (in.size() < n) return false;
    field.assign(in.substr(0, n));
    in.remove_prefix(n);
    return true;
  };
  while (!in.empty()) {
    std::string k, v;
    if (!take(k) || !take(v)) return std::nullopt;
    out[k] = std::move(v);
  }
  return out;
}

using Ctx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

}  // namespace

SecretBox::SecretBox(std::string key) : key_(std::move(key)), key_id_(KeyIdBytes(key_)) {}

Result<SecretBox> SecretBox::FromKey(std::string key) {
  if (key.size() != kKeyBytes) return InvalidArgument("a secrets key is 32 bytes, not " + std::to_string(key.size()));
  return SecretBox(std::move(key));
}

Result<SecretBox> SecretBox::Load(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto key = HexDecode(Trim(*text));
  if (!key || key->size() != kKeyBytes) {
    return InvalidArgument(path + " is not a secrets key (64 hex digits); create one with kiln-controller certs init");
  }
  return SecretBox(std::move(*key));
}

std::string SecretBox::KeyId() const { return HexEncode(key_id_); }

Result<std::string> SecretBox::Seal(const std::map<std::string, std::string>& values) const {
  std::string plain = Encode(values);
  std::string out(kMagic);
  out += key_id_;
  unsigned char nonce[kNonceBytes];
  if (RAND_bytes(nonce, sizeof nonce) != 1) return Internal("cannot draw a random nonce to seal secrets");
  out.append(reinterpret_cast<const char*>(nonce), sizeof nonce);
  Ctx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  std::string ct(plain.size(), '\0');
  int n = 0;
  unsigned char tag[kTagBytes];
  auto* key = reinterpret_cast<const unsigned char*>(key_.data());
  auto* aad = reinterpret_cast<const unsigned char*>(out.data());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key, nonce) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &n, aad, static_cast<int>(out.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(ct.data()), &n,
                        reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), nullptr, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) != 1) {
    return Internal("cannot seal secrets (OpenSSL AES-256-GCM failed)");
  }
  OPENSSL_cleanse(plain.data(), plain.size());
  out += ct;
  out.append(reinterpret_cast<const char*>(tag), kTagBytes);
  return out;
}

Result<std::map<std::string, std::string>> SecretBox::Open(std::string_view sealed) const {
  if (sealed.size() < kHeader + kTagBytes || sealed.substr(0, kMagic.size()) != kMagic) {
    return InvalidArgument("the sealed secrets are not in a known format");
  }
  std::string_view id = sealed.substr(kMagic.size(), kKeyIdBytes);
  if (id != key_id_) {
    return InvalidArgument("the secrets were sealed with another secrets key (" + HexEncode(id) +
                           ") than this controller's (" + KeyId() +
                           "): every controller of the farm needs the same tls_dir/secrets.key");
  }
  auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data() + kMagic.size() + kKeyIdBytes);
  std::string_view ct = sealed.substr(kHeader, sealed.size() - kHeader - kTagBytes);
  std::string tag(sealed.substr(sealed.size() - kTagBytes));
  Ctx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  std::string plain(ct.size(), '\0');
  int n = 0;
  auto* key = reinterpret_cast<const unsigned char*>(key_.data());
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key, nonce) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(sealed.data()),
                              static_cast<int>(kHeader)) == 1 &&
            EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()), &n,
                              reinterpret_cast<const unsigned char*>(ct.data()), static_cast<int>(ct.size())) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), nullptr, &n) == 1;
  if (!ok) return InvalidArgument("the sealed secrets do not verify under this controller's key: they were changed");
  auto values = Decode(plain);
  OPENSSL_cleanse(plain.data(), plain.size());
  if (!values) return InvalidArgument("the sealed secrets are not in a known format");
  return std::move(*values);
}

Result<bool> EnsureSecretKey(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return false;
  if (errno != ENOENT) return Internal("cannot look at " + path + ": " + std::strerror(errno));
  unsigned char key[kKeyBytes];
  if (RAND_bytes(key, sizeof key) != 1) return Internal("cannot draw a random secrets key");
  std::string text = HexEncode(std::string_view(reinterpret_cast<const char*>(key), sizeof key)) + "\n";
  OPENSSL_cleanse(key, sizeof key);
  KILN_RETURN_IF_ERROR(WriteSecretFile(path, text, 0600));
  return true;
}

}  // namespace kiln::auth
