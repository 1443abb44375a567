// parse_target() and describe(): the shared cache URL forms, good and bad.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "adapters/redis/redis_target.hpp"

namespace {

using mtasts::ErrorCategory;
using mtasts::redis::Address;
using mtasts::redis::describe;
using mtasts::redis::parse_target;
using mtasts::redis::Target;
using Kind = Target::Kind;

Target tcp(std::string host, std::uint16_t port, int db = 0, Kind kind = Kind::tcp) {
  Target target;
  target.kind = kind;
  target.host = std::move(host);
  target.port = port;
  target.database = db;
  return target;
}

Target unix_socket(std::string path, int db = 0) {
  Target target;
  target.kind = Kind::unix_socket;
  target.path = std::move(path);
  target.database = db;
  return target;
}

Target sentinel(std::vector<Address> sentinels, std::string master, int db = 0) {
  Target target;
  target.kind = Kind::sentinel;
  target.sentinels = std::move(sentinels);
  target.master_name = std::move(master);
  target.database = db;
  return target;
}

struct Good {
  const char* url;
  Target expected;
  const char* described;
};

TEST(RedisTarget, GoodUrls) {
  const std::vector<Good> cases = {
      {"redis://127.0.0.1", tcp("127.0.0.1", 6379), "redis 127.0.0.1:6379 db 0"},
      {"redis://127.0.0.1:6380", tcp("127.0.0.1", 6380), "redis 127.0.0.1:6380 db 0"},
      {"redis://cache.example/3", tcp("cache.example", 6379, 3), "redis cache.example:6379 db 3"},
      {"redis://Cache.Example:1/", tcp("cache.example", 1), "redis cache.example:1 db 0"},
      {"REDIS://h:65535/2147483647", tcp("h", 65535, 2147483647), "redis h:65535 db 2147483647"},
      {"rediss://cache.example:6380/1", tcp("cache.example", 6380, 1, Kind::tls),
       "rediss cache.example:6380 db 1"},
      {"redis://[::1]", tcp("::1", 6379), "redis [::1]:6379 db 0"},
      {"redis://[2001:DB8::1]:7000/5", tcp("2001:db8::1", 7000, 5),
       "redis [2001:db8::1]:7000 db 5"},
      {"unix:///run/redis/redis.sock", unix_socket("/run/redis/redis.sock"),
       "redis unix /run/redis/redis.sock db 0"},
      {"unix:///tmp/r.sock?db=4", unix_socket("/tmp/r.sock", 4), "redis unix /tmp/r.sock db 4"},
      {"sentinel://s1,s2:26380/mymaster", sentinel({{"s1", 26379}, {"s2", 26380}}, "mymaster"),
       "sentinel mymaster via s1:26379,s2:26380 db 0"},
      {"sentinel://[::1]:5000/cache-1/2", sentinel({{"::1", 5000}}, "cache-1", 2),
       "sentinel cache-1 via [::1]:5000 db 2"},
  };
  for (const Good& c : cases) {
    SCOPED_TRACE(c.url);
    const auto target = parse_target(c.url);
    ASSERT_TRUE(target.has_value()) << target.error().reason;
    EXPECT_EQ(*target, c.expected);
    EXPECT_EQ(describe(*target), c.described);
  }
}

struct Bad {
  const char* url;
  const char* says;  // a part of the reason
};

TEST(RedisTarget, BadUrls) {
  const std::vector<Bad> cases = {
      {"", "expected redis://"},
      {"127.0.0.1:6379", "expected redis://"},
      {"http://cache.example", "unknown scheme \"http\""},
      {"redis://", "the host is empty"},
      {"redis://:6379", "the host is empty"},
      {"redis:///0", "the host is empty"},
      {"redis://h:", "port \"\""},
      {"redis://h:0", "port \"0\""},
      {"redis://h:65536", "port \"65536\""},
      {"redis://h:-1", "port \"-1\""},
      {"redis://h:6379x", "port \"6379x\""},
      {"redis://h/x", "database \"x\""},
      {"redis://h/-1", "database \"-1\""},
      {"redis://h/2147483648", "database \"2147483648\""},
      {"redis://h/1/2", "database \"1/2\""},
      {"redis://h/1?x=y", "database \"1?x=y\""},
      {"redis://user:secret@h", "shared_cache_password_file"},
      {"rediss://:secret@h:6380", "shared_cache_password_file"},
      {"sentinel://:pw@s1/m", "shared_cache_password_file"},
      {"redis://h#f", "fragment"},
      {"redis://ho st", "not a host name"},
      {"redis://-h", "not a host name"},
      {"redis://::1", "brackets"},
      {"redis://[::1", "no closing"},
      {"redis://[nope]:1", "not an IPv6 address"},
      {"redis://[::1]x", "unexpected"},
      {"unix://run/redis.sock", "must be absolute"},
      {"unix:///", "path is empty"},
      {"unix:///tmp/r.sock?foo=1", "unknown parameter"},
      {"unix:///tmp/r.sock?db=x", "database \"x\""},
      {"sentinel://s1,s2", "no master name"},
      {"sentinel://s1/", "no master name"},
      {"sentinel://s1//1", "master name is empty"},
      {"sentinel://s1,,s2/m", "the host is empty"},
      {"sentinel://s1:0/m", "port \"0\""},
  };
  for (const Bad& c : cases) {
    SCOPED_TRACE(c.url);
    const auto target = parse_target(c.url);
    ASSERT_FALSE(target.has_value());
    EXPECT_EQ(target.error().category, ErrorCategory::config);
    EXPECT_NE(target.error().reason.find(c.says), std::string::npos) << target.error().reason;
    EXPECT_EQ(target.error().reason.find('\n'), std::string::npos);
  }
}

TEST(RedisTarget, SecretsAreNeverEchoed) {
  const auto target = parse_target("redis://admin:hunter2@cache.example:6379/0");
  ASSERT_FALSE(target.has_value());
  EXPECT_EQ(target.error().reason.find("hunter2"), std::string::npos);
  EXPECT_EQ(target.error().reason.find("admin"), std::string::npos);
}

TEST(RedisTarget, LongSocketPathIsRefused) {
  const std::string path = "/" + std::string(120, 'a');
  const auto target = parse_target("unix://" + path);
  ASSERT_FALSE(target.has_value());
  EXPECT_NE(target.error().reason.find("longer than"), std::string::npos);
}

}  // namespace
