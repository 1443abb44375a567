// Netstring framing for the Postfix socketmap protocol (design §2.3, style §2.10 and §2.12):
// complete, split, pipelined, oversized and malformed input.
#include "core/netstring.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mtasts {
namespace {

constexpr std::size_t kMax = 100;

struct Row {
  const char* name;
  std::string input;
  NetstringStatus status;
  std::size_t consumed;
  std::string payload;
};

TEST(Netstring, table) {
  const std::vector<Row> rows = {
      {"empty input waits", "", NetstringStatus::need_more, 0, ""},
      {"digits only wait", "12", NetstringStatus::need_more, 0, ""},
      {"length and colon wait", "3:", NetstringStatus::need_more, 0, ""},
      {"partial payload waits", "5:hel", NetstringStatus::need_more, 0, ""},
      {"payload without comma waits", "5:hello", NetstringStatus::need_more, 0, ""},
      {"complete", "5:hello,", NetstringStatus::done, 8, "hello"},
      {"empty payload", "0:,", NetstringStatus::done, 3, ""},
      {"first of two (pipelined)", "1:a,1:b,", NetstringStatus::done, 4, "a"},
      {"payload may hold anything", std::string("3:\0,:", 5) + ",", NetstringStatus::done, 6,
       std::string("\0,:", 3)},
      {"request as Postfix sends it", "23:postfix enforce.example,", NetstringStatus::done, 27,
       "postfix enforce.example"},
      {"exactly the limit", "100:" + std::string(100, 'x') + ",", NetstringStatus::done, 105,
       std::string(100, 'x')},
      {"one over the limit, refused before the payload", "101:", NetstringStatus::invalid, 0, ""},
      {"huge length refused while digits arrive", "99999999999999999999999",
       NetstringStatus::invalid, 0, ""},
      {"leading zero", "05:hello,", NetstringStatus::invalid, 0, ""},
      {"double zero", "00:,", NetstringStatus::invalid, 0, ""},
      {"no length", ":hello,", NetstringStatus::invalid, 0, ""},
      {"letters", "hello", NetstringStatus::invalid, 0, ""},
      {"sign", "-1:,", NetstringStatus::invalid, 0, ""},
      {"space before colon", "5 :hello,", NetstringStatus::invalid, 0, ""},
      {"wrong terminator", "5:hello;", NetstringStatus::invalid, 0, ""},
      {"payload longer than said", "4:hello,", NetstringStatus::invalid, 0, ""},
      {"binary junk", "\xff\xfe\x00", NetstringStatus::invalid, 0, ""},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    const NetstringStep step = read_netstring(row.input, kMax);
    EXPECT_EQ(step.status, row.status);
    if (row.status == NetstringStatus::done) {
      EXPECT_EQ(step.consumed, row.consumed);
      EXPECT_EQ(step.payload, row.payload);
    }
    if (row.status == NetstringStatus::invalid) {
      EXPECT_FALSE(step.reason.empty());
      EXPECT_EQ(step.reason.find('\n'), std::string::npos);
    }
  }
}

TEST(Netstring, every_prefix_of_a_valid_netstring_waits) {
  const std::string whole = format_netstring("postfix example.com");
  for (std::size_t n = 0; n < whole.size(); ++n) {
    SCOPED_TRACE(n);
    EXPECT_EQ(read_netstring(whole.substr(0, n), kMax).status, NetstringStatus::need_more);
  }
  EXPECT_EQ(read_netstring(whole, kMax).status, NetstringStatus::done);
}

TEST(Netstring, limit_zero_takes_only_the_empty_netstring) {
  EXPECT_EQ(read_netstring("0:,", 0).status, NetstringStatus::done);
  EXPECT_EQ(read_netstring("1", 0).status, NetstringStatus::invalid);
  EXPECT_EQ(read_netstring("9", 0).status, NetstringStatus::invalid);
}

TEST(Netstring, format_round_trips) {
  for (const std::string payload : {"", "OK secure match=a.example", "NOTFOUND "}) {
    const std::string framed = format_netstring(payload);
    const NetstringStep step = read_netstring(framed, 1000);
    ASSERT_EQ(step.status, NetstringStatus::done);
    EXPECT_EQ(step.payload, payload);
    EXPECT_EQ(step.consumed, framed.size());
  }
  EXPECT_EQ(format_netstring("NOTFOUND "), "9:NOTFOUND ,");
}

}  // namespace
}  // namespace mtasts
