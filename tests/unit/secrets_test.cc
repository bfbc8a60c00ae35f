// Secret env: sealing at rest (auth::SecretBox) and masking in what a
// build prints (SecretMask), including values cut between log pieces.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <random>

#include "auth/secrets.h"
#include "common/mask.h"
#include "common/util.h"
#include "harness/harness.h"
#include "kiln/v1/kiln.pb.h"
#include "worker/compile_cache.h"

namespace kiln {
namespace {

TEST(SecretBox, SealsAndOpensAndNeverHoldsAValueInClear) {
  test::TempDir dir;
  std::string key = dir.path() + "/secrets.key";
  auto made = auth::EnsureSecretKey(key);
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_TRUE(*made);
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = auth::EnsureSecretKey(key);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again) << "an existing key is never replaced";

  auto box = auth::SecretBox::Load(key);
  ASSERT_TRUE(box.ok()) << box.status().message();
  std::map<std::string, std::string> values{{"TOKEN", "s3cr3t-value-42"}, {"OTHER", std::string("a\nb\0c", 5)}};
  auto sealed = box->Seal(values);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->find("s3cr3t"), std::string::npos);
  EXPECT_EQ(sealed->find("TOKEN"), std::string::npos) << "names are sealed too";
  auto opened = box->Open(*sealed);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  EXPECT_EQ(*opened, values);
  // Two seals of the same values differ (a fresh nonce each).
  EXPECT_NE(*box->Seal(values), *sealed);

  // Changed bytes do not open.
  std::string bad = *sealed;
  bad[bad.size() / 2] ^= 1;
  auto tampered = box->Open(bad);
  EXPECT_FALSE(tampered.ok());
  EXPECT_NE(tampered.status().message().find("changed"), std::string::npos) << tampered.status().message();
  EXPECT_FALSE(box->Open("").ok());
  EXPECT_FALSE(box->Open(sealed->substr(0, 10)).ok());

  // Another key says so, naming both keys.
  std::string other = dir.path() + "/other.key";
  ASSERT_TRUE(auth::EnsureSecretKey(other).ok());
  auto box2 = auth::SecretBox::Load(other);
  ASSERT_TRUE(box2.ok());
  auto wrong = box2->Open(*sealed);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find(box->KeyId()), std::string::npos) << wrong.status().message();
  EXPECT_NE(wrong.status().message().find("secrets.key"), std::string::npos) << wrong.status().message();

  test::WriteFile(dir.path() + "/junk.key", "not a key\n");
  auto junk = auth::SecretBox::Load(dir.path() + "/junk.key");
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.status().message().find("certs init"), std::string::npos) << junk.status().message();
  EXPECT_EQ(auth::SecretBox::Load(dir.path() + "/absent.key").status().code(), Code::kNotFound);
}

TEST(SecretMask, MasksEveryOccurrenceLongestFirst) {
  SecretMask m(std::map<std::string, std::string>{{"A", "hunter22"}, {"B", "hunter22-extended"}});
  EXPECT_EQ(m.Apply("pw=hunter22 and hunter22-extended, hunter2"), "pw=*** and ***, hunter2");
  EXPECT_EQ(m.Apply("hunter22hunter22"), "******");
  EXPECT_EQ(m.Apply(""), "");
  SecretMask none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.Apply("hunter22"), "hunter22");
}

TEST(SecretMask, MasksEachLineOfAMultiLineValue) {
  SecretMask m(std::map<std::string, std::string>{{"KEY", "-----BEGIN KEY-----\r\nabcdEFGH\nxy\n"}});
  EXPECT_EQ(m.Apply("line abcdEFGH here"), "line *** here");
  EXPECT_EQ(m.Apply("xy stays: too short to mask alone"), "xy stays: too short to mask alone");
  EXPECT_EQ(m.Apply("-----BEGIN KEY-----\r\nabcdEFGH\nxy\n!"), "***!");
}

// However a log is cut into pieces, what comes out equals masking it whole.
TEST(SecretMask, FindsValuesCutBetweenPieces) {
  const std::map<std::string, std::string> secrets{{"A", "s3cr3t-token"}, {"B", "tok"}, {"C", "t-to"}};
  SecretMask whole(secrets);
  const std::string text = "start s3cr3t-token|s3cr3t-tokens3cr3t-to|tok|s3cr3t-t0ken|xs3cr3t-token\ns3cr3t-token";
  const std::string want = whole.Apply(text);
  EXPECT_EQ(want.find("s3cr3t-token"), std::string::npos);
  std::mt19937 rng(7);
  for (int round = 0; round < 500; ++round) {
    SecretMask m(secrets);
    std::string got;
    size_t at = 0;
    while (at < text.size()) {
      size_t n = std::min(text.size() - at, static_cast<size_t>(rng() % 6));
      got += m.Feed(std::string_view(text).substr(at, n));
      at += n;
    }
    got += m.Flush();
    ASSERT_EQ(got, want) << "round " << round;
  }
}

TEST(SecretMask, CompileCacheRequestsAreMaskedButKeysAreNot) {
  SecretMask m(std::map<std::string, std::string>{{"T", "pa55word-xyz"}});
  v1::StoreCompileRequest req;
  req.set_key(std::string(64, 'a'));
  req.mutable_result()->set_stderr("x.c:1: note: '#pragma message: token pa55word-xyz'");
  req.mutable_result()->set_stdout("pa55word-xyz");
  req.mutable_parts()->add_args("-DTOKEN=pa55word-xyz");
  (*req.mutable_parts()->mutable_env())["CFLAGS"] = "-DX=pa55word-xyz";
  worker::MaskCompileStore(m, &req);
  std::string all = req.DebugString();
  EXPECT_EQ(all.find("pa55word"), std::string::npos) << all;
  EXPECT_EQ(req.parts().args(0), "-DTOKEN=***");
  EXPECT_EQ(req.key(), std::string(64, 'a'));
  v1::RecordCompilesRequest rec;
  auto* e = rec.add_events();
  e->set_reason("failed");
  e->set_detail("error: pa55word-xyz undeclared");
  worker::MaskCompileRecord(m, &rec);
  EXPECT_EQ(rec.events(0).detail(), "error: *** undeclared");
}

}  // namespace
}  // namespace kiln
