// gzip_compress / gzip_decompress: RFC 1952 through zlib, deterministic and bounded.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/gzip.hpp"

namespace mtasts {
namespace {

// Bytes that do not compress: a fixed linear congruential sequence.
std::string noise(std::size_t size) {
  std::string out(size, '\0');
  std::uint32_t state = 12345;
  for (char& c : out) {
    state = state * 1103515245U + 12345U;
    c = static_cast<char>(state >> 24);
  }
  return out;
}

std::string from_hex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return out;
}

TEST(Gzip, RoundTrips) {
  const std::string inputs[] = {"", "a", "hello, tlsrpt\n", std::string(100000, 'x'),
                                noise(300000)};
  for (const std::string& input : inputs) {
    const std::string compressed = gzip_compress(input);
    const auto back = gzip_decompress(compressed, input.size());
    ASSERT_TRUE(back.has_value()) << back.error().reason;
    EXPECT_EQ(*back, input);
  }
}

TEST(Gzip, SameInputSameBytesAndAFixedHeader) {
  const std::string input = "{\"organization-name\": \"Example\"}";
  const std::string first = gzip_compress(input);
  EXPECT_EQ(first, gzip_compress(input));
  ASSERT_GE(first.size(), 18U);
  // RFC 1952 §2.3: ID1 ID2 CM=8 (deflate), FLG=0 (no name, comment, extra), MTIME=0, XFL=2
  // (best compression), OS=3 (Unix).
  EXPECT_EQ(first.substr(0, 10), std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03", 10));
  // ISIZE, the last four bytes: the input length, little-endian.
  EXPECT_EQ(first.substr(first.size() - 4), std::string("\x20\x00\x00\x00", 4));
}

TEST(Gzip, CompressesRepetitiveReports) {
  const std::string input(100000, 'x');
  EXPECT_LT(gzip_compress(input).size(), 1000U);
}

TEST(Gzip, ReadsAnotherImplementationsOutput) {
  // Python's gzip.compress(b"hello, tlsrpt\n", mtime=0).
  const std::string python =
      from_hex("1f8b0800000000000203cb48cdc9c9d75128c9292e2a28e10200521c08500e000000");
  const auto out = gzip_decompress(python, 1024);
  ASSERT_TRUE(out.has_value()) << out.error().reason;
  EXPECT_EQ(*out, "hello, tlsrpt\n");
}

TEST(Gzip, ConcatenatedMembersAreOneFile) {
  const auto out = gzip_decompress(gzip_compress("first ") + gzip_compress("second"), 100);
  ASSERT_TRUE(out.has_value()) << out.error().reason;
  EXPECT_EQ(*out, "first second");
}

TEST(Gzip, ABombStopsAtTheCap) {
  const std::string bomb = gzip_compress(std::string(20 * 1024 * 1024, '\0'));
  ASSERT_LT(bomb.size(), 64U * 1024);
  const auto out = gzip_decompress(bomb, 1024 * 1024);
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().category, ErrorCategory::store);
  EXPECT_EQ(out.error().reason, "gzip: the data inflates to more than 1048576 bytes, the limit");
}

TEST(Gzip, TheCapIsInclusive) {
  const std::string input(5000, 'q');
  const std::string compressed = gzip_compress(input);
  EXPECT_TRUE(gzip_decompress(compressed, 5000).has_value());
  const auto over = gzip_decompress(compressed, 4999);
  ASSERT_FALSE(over.has_value());
  EXPECT_NE(over.error().reason.find("more than 4999 bytes"), std::string::npos);
  EXPECT_FALSE(gzip_decompress(compressed, 0).has_value());
  // A cap far above what anything allocates is only a cap.
  EXPECT_TRUE(gzip_decompress(compressed, SIZE_MAX).has_value());
}

struct BadInput {
  const char* name;
  std::string data;
  std::string_view reason_part;
};

TEST(Gzip, RefusesWhatIsNotGzip) {
  const std::string good = gzip_compress("a report that is long enough to cut in the middle");
  std::string corrupt = good;
  corrupt[12] = static_cast<char>(corrupt[12] ^ 0x55);
  std::string bad_crc = good;
  bad_crc[bad_crc.size() - 6] = static_cast<char>(bad_crc[bad_crc.size() - 6] ^ 0x01);
  const BadInput rows[] = {
      {"empty", "", "expected the magic bytes 1f 8b, found no bytes"},
      {"one byte", "\x1f", "found 1f"},
      {"plain text", "hello", "found 68 65"},
      {"json", "{\"a\": 1}", "found 7b 22"},
      {"zlib stream", from_hex("789c4b040000620062"), "found 78 9c"},
      {"magic only", "\x1f\x8b", "truncated"},
      {"header only", good.substr(0, 10), "truncated"},
      {"cut in the middle", good.substr(0, good.size() / 2), "truncated"},
      {"trailer missing", good.substr(0, good.size() - 8), "truncated"},
      {"unknown method", std::string("\x1f\x8b\x07\x00\x00\x00\x00\x00\x00\x03", 10) + "xxxx",
       "corrupt"},
      {"corrupt deflate data", corrupt, "corrupt"},
      {"wrong crc", bad_crc, "corrupt"},
      {"trailing garbage", good + "junk", "4 bytes after the end of the gzip stream"},
      {"trailing zero byte", good + std::string(1, '\0'), "1 bytes after the end"},
  };
  for (const BadInput& row : rows) {
    const auto out = gzip_decompress(row.data, 1 << 20, ErrorCategory::session_report);
    ASSERT_FALSE(out.has_value()) << row.name;
    EXPECT_EQ(out.error().category, ErrorCategory::session_report) << row.name;
    EXPECT_TRUE(out.error().reason.starts_with("gzip: ")) << row.name << ": " << out.error().reason;
    EXPECT_NE(out.error().reason.find(row.reason_part), std::string::npos)
        << row.name << ": " << out.error().reason;
  }
}

}  // namespace
}  // namespace mtasts
