// The config file (service/config.cpp): the daemon's [daemon] and [socketmap.NAME] keys, and
// that unknown keys and bad values are refused with file, line and reason.
#include "service/config.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mtasts {
namespace {

std::expected<Config, Error> parse(const std::string& text) {
  return parse_config(text, "test.toml");
}

TEST(Config, daemon_defaults) {
  auto config = parse("");
  ASSERT_TRUE(config) << config.error().reason;
  const DaemonConfig& d = config->daemon;
  EXPECT_EQ(d.exim_socket, "/run/mtasts/exim.sock");
  EXPECT_EQ(d.socketmap_socket, "/run/mtasts/socketmap.sock");
  EXPECT_TRUE(d.exim_listen.empty());
  EXPECT_TRUE(d.socketmap_listen.empty());
  EXPECT_EQ(d.socket_mode, 0660u);
  EXPECT_EQ(d.max_request_line, 1024u);
  ASSERT_EQ(d.socketmaps.size(), 1u);
  EXPECT_EQ(d.socketmaps.begin()->first, "postfix");
  EXPECT_EQ(d.socketmaps.begin()->second, SocketmapMapOptions{});
}

TEST(Config, daemon_keys) {
  auto config = parse(R"(
cache = "/tmp/c.mdb"
[daemon]
exim_socket = ""
socketmap_socket = "/run/x/sm.sock"
exim_listen = "127.0.0.1:8461"
socketmap_listen = ["127.0.0.1:8462", "[::1]:8462"]
socket_owner = "root"
socket_group = "Debian-exim"
socket_mode = "0666"
user = "mtasts"
group = "mtasts"
read_timeout_ms = 2000
write_timeout_ms = 3000
idle_timeout_ms = 4000
shutdown_timeout_ms = 0
max_request_line = 512
max_netstring = 2048
max_connections = 10
[socketmap.strict]
enforce_testing = true
servername = false
[socketmap.tlsrpt]
tlsrpt = true
report_testing = true
)");
  ASSERT_TRUE(config) << config.error().reason;
  const DaemonConfig& d = config->daemon;
  EXPECT_EQ(d.exim_socket, "");
  EXPECT_EQ(d.socketmap_socket, "/run/x/sm.sock");
  EXPECT_EQ(d.exim_listen, std::vector<std::string>{"127.0.0.1:8461"});
  EXPECT_EQ(d.socketmap_listen, (std::vector<std::string>{"127.0.0.1:8462", "[::1]:8462"}));
  EXPECT_EQ(d.socket_owner, "root");
  EXPECT_EQ(d.socket_group, "Debian-exim");
  EXPECT_EQ(d.socket_mode, 0666u);
  EXPECT_EQ(d.user, "mtasts");
  EXPECT_EQ(d.read_timeout.count(), 2000);
  EXPECT_EQ(d.write_timeout.count(), 3000);
  EXPECT_EQ(d.idle_timeout.count(), 4000);
  EXPECT_EQ(d.shutdown_timeout.count(), 0);
  EXPECT_EQ(d.max_request_line, 512u);
  EXPECT_EQ(d.max_netstring, 2048u);
  EXPECT_EQ(d.max_connections, 10u);
  ASSERT_EQ(d.socketmaps.size(), 2u);  // the tables replace the default "postfix" map
  EXPECT_EQ(d.socketmaps.at("strict"), (SocketmapMapOptions{true, false, false, false}));
  EXPECT_EQ(d.socketmaps.at("tlsrpt"), (SocketmapMapOptions{false, true, true, true}));
}

TEST(Config, refresh_cdb_and_metrics_keys) {
  const Config defaults = *parse("");
  EXPECT_TRUE(defaults.daemon.refresh);
  EXPECT_EQ(defaults.daemon.refresh_concurrency, 8u);
  EXPECT_EQ(defaults.daemon.refresh_scan_interval, 300);
  EXPECT_EQ(defaults.daemon.refresh_timing, RefreshTiming{});
  EXPECT_EQ(defaults.daemon.refresh_timing.drop_unused_after, 30 * 86400);
  EXPECT_EQ(defaults.daemon.cdb_export, "");
  EXPECT_EQ(defaults.daemon.cdb_export_interval, 10);
  EXPECT_EQ(defaults.daemon.metrics_listen, "");
  auto config = parse(R"([daemon]
refresh = false
refresh_concurrency = 2
refresh_scan_interval = 1
refresh_ahead = 0
refresh_retry_max = 60
drop_unused_after = 0
refresh_ttl_window = 3600
cdb_export = "/var/lib/mtasts/exim.cdb"
cdb_export_interval = 1
metrics_listen = "[::1]:9461"
)");
  ASSERT_TRUE(config) << config.error().reason;
  const DaemonConfig& d = config->daemon;
  EXPECT_FALSE(d.refresh);
  EXPECT_EQ(d.refresh_concurrency, 2u);
  EXPECT_EQ(d.refresh_scan_interval, 1);
  EXPECT_EQ(d.refresh_timing, (RefreshTiming{0, 60, 0, 3600}));
  EXPECT_EQ(d.cdb_export, "/var/lib/mtasts/exim.cdb");
  EXPECT_EQ(d.cdb_export_interval, 1);
  EXPECT_EQ(d.metrics_listen, "[::1]:9461");
}

TEST(Config, socket_mode_as_toml_octal) {
  auto config = parse("[daemon]\nsocket_mode = 0o640\n");
  ASSERT_TRUE(config) << config.error().reason;
  EXPECT_EQ(config->daemon.socket_mode, 0640u);
}

struct BadRow {
  const char* name;
  std::string text;
  std::string expected;  // a part of the message, which always starts "test.toml:<line>:"
};

TEST(Config, bad_daemon_values_name_file_line_and_key) {
  const std::vector<BadRow> rows = {
      {"unknown daemon key", "[daemon]\nlisten = 1\n", "test.toml:2: daemon.listen: unknown key"},
      {"daemon not a table", "daemon = 1\n", "test.toml:1: daemon: expected a table"},
      {"relative socket", "[daemon]\nexim_socket = \"run/x.sock\"\n",
       "test.toml:2: exim_socket: must be an absolute path"},
      {"socket path too long", "[daemon]\nexim_socket = \"/" + std::string(120, 'x') + "\"\n",
       "test.toml:2: exim_socket: longer than"},
      {"listen without port", "[daemon]\nexim_listen = \"127.0.0.1\"\n",
       "test.toml:2: exim_listen: listen address"},
      {"listen bad port", "[daemon]\nexim_listen = \"127.0.0.1:0\"\n", "port must be 1-65535"},
      {"listen bare v6", "[daemon]\nsocketmap_listen = [\"::1:25\"]\n", "[V6]:PORT"},
      {"listen host name", "[daemon]\nsocketmap_listen = [\"localhost:25\"]\n",
       "expected an IPv4 address"},
      {"listen not strings", "[daemon]\nexim_listen = [1]\n", "expected strings"},
      {"mode not octal", "[daemon]\nsocket_mode = \"0999\"\n", "test.toml:2: socket_mode"},
      {"mode too wide", "[daemon]\nsocket_mode = 0o7777\n", "socket_mode"},
      {"timeout out of range", "[daemon]\nread_timeout_ms = 10\n",
       "test.toml:2: read_timeout_ms: 10 is out of range"},
      {"line limit too small", "[daemon]\nmax_request_line = 8\n", "max_request_line"},
      {"owner not a string", "[daemon]\nsocket_owner = 0\n", "expected a string"},
      {"unknown map key", "[socketmap.postfix]\nstrict = true\n",
       "test.toml:2: socketmap.postfix.strict: unknown key"},
      {"map option not bool", "[socketmap.postfix]\ntlsrpt = \"yes\"\n",
       "test.toml:2: tlsrpt: expected true or false"},
      {"report_testing needs tlsrpt", "[socketmap.postfix]\nreport_testing = true\n",
       "needs tlsrpt = true"},
      {"bad map name", "[socketmap.\"a b\"]\n", "a map name is"},
      {"socketmap not a table", "socketmap = 1\n", "expected tables"},
      {"refresh not bool", "[daemon]\nrefresh = 1\n", "test.toml:2: refresh: expected true"},
      {"refresh concurrency 0", "[daemon]\nrefresh_concurrency = 0\n",
       "refresh_concurrency: 0 is out of range"},
      {"scan interval 0", "[daemon]\nrefresh_scan_interval = 0\n", "refresh_scan_interval"},
      {"retry max too small", "[daemon]\nrefresh_retry_max = 1\n", "refresh_retry_max"},
      {"drop unused too soon", "[daemon]\ndrop_unused_after = 30\n",
       "test.toml:2: daemon.drop_unused_after: must be 0 (never) or at least 60"},
      {"relative cdb", "[daemon]\ncdb_export = \"exim.cdb\"\n",
       "test.toml:2: cdb_export: must be an absolute file path"},
      {"cdb a directory", "[daemon]\ncdb_export = \"/var/lib/mtasts/\"\n", "cdb_export"},
      {"cdb interval 0", "[daemon]\ncdb_export_interval = 0\n", "cdb_export_interval"},
      {"metrics without port", "[daemon]\nmetrics_listen = \"127.0.0.1\"\n",
       "test.toml:2: metrics_listen: listen address"},
  };
  for (const BadRow& row : rows) {
    SCOPED_TRACE(row.name);
    auto config = parse(row.text);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().category, ErrorCategory::config);
    EXPECT_TRUE(config.error().reason.starts_with("test.toml:")) << config.error().reason;
    EXPECT_NE(config.error().reason.find(row.expected), std::string::npos) << config.error().reason;
  }
}

TEST(Config, shared_cache_keys) {
  auto config = parse(
      "shared_cache = \"sentinel://10.0.0.1:26379,10.0.0.2/mymaster\"\n"
      "shared_cache_password_file = \"/etc/mtasts/redis.pass\"\n"
      "shared_cache_user = \"mtasts\"\nshared_cache_prefix = \"mail:\"\n"
      "shared_cache_timeout_ms = 25\n");
  ASSERT_TRUE(config) << config.error().reason;
  EXPECT_EQ(config->shared_cache.url, "sentinel://10.0.0.1:26379,10.0.0.2/mymaster");
  EXPECT_EQ(config->shared_cache.password_file, "/etc/mtasts/redis.pass");
  EXPECT_EQ(config->shared_cache.user, "mtasts");
  EXPECT_EQ(config->shared_cache.prefix, "mail:");
  EXPECT_EQ(config->shared_cache.timeout, std::chrono::milliseconds(25));
  auto defaults = parse("");
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->shared_cache.url, "");
  EXPECT_EQ(defaults->shared_cache.prefix, "mtasts:");
  EXPECT_EQ(defaults->shared_cache.timeout, std::chrono::milliseconds(100));

  const std::vector<BadRow> rows = {
      {"password in the URL", "shared_cache = \"redis://u:secret@h:6379/0\"\n",
       "test.toml:1: shared_cache: "},
      {"unknown scheme", "shared_cache = \"memcache://h\"\n", "test.toml:1: shared_cache: "},
      {"relative password file", "shared_cache_password_file = \"redis.pass\"\n",
       "must be an absolute path"},
      {"prefix with a space", "shared_cache_prefix = \"a b\"\n", "printable ASCII"},
      {"timeout out of range", "shared_cache_timeout_ms = 0\n", "out of range"},
  };
  for (const BadRow& row : rows) {
    SCOPED_TRACE(row.name);
    auto bad = parse(row.text);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().reason.find(row.expected), std::string::npos) << bad.error().reason;
  }
}

TEST(Config, listen_addresses) {
  EXPECT_EQ(*parse_listen_address("127.0.0.1:8461"), (ListenAddress{"127.0.0.1", 8461}));
  EXPECT_EQ(*parse_listen_address("[::1]:25"), (ListenAddress{"::1", 25}));
  EXPECT_FALSE(parse_listen_address("[::1]"));
  EXPECT_FALSE(parse_listen_address("127.0.0.1:65536"));
  EXPECT_FALSE(parse_listen_address(":25"));
}

// Error reasons are one line (style §2.2): no raw line break or control byte from the file.
bool one_line(const std::string& reason) {
  return !reason.empty() && reason.find_first_of("\n\r") == std::string::npos;
}

// toml++ 3.3 runs into __builtin_unreachable() when it asks whether some non-ASCII characters
// (U+00A1-U+0499, U+2E4E-U+3247, U+FC26-U+FEFE) are whitespace, which it does outside strings and
// after a backslash in a """ string. parse_config refuses those before toml++ reads them (found by
// fuzz/fuzz_config.cpp; under the sanitizers these inputs were undefined behaviour).
TEST(Config, non_ascii_outside_strings_is_refused_with_its_line) {
  const std::vector<BadRow> rows = {
      {"bare key", "ché = \"/tmp\"\n", "test.toml:1: non-ASCII character outside a quoted string"},
      {"after a value", "cache = \"/tmp/c.mdb\"\nstrict = trueé\n", "test.toml:2: non-ASCII"},
      {"after a closing quote", "cache = \"/tmp/c.mdb\"é\n", "test.toml:1: non-ASCII"},
      {"number scanned ahead over a quote", "https_port = 1\"é\"\n", "test.toml:1: non-ASCII"},
      {"sign scanned ahead", "dns_timeout_ms = -v\"caché\" = 1\n", "test.toml:1: non-ASCII"},
      {"space date scanned ahead", "cache = 1979-05-27 0\"é\"\n", "test.toml:1: non-ASCII"},
      {"junk after a value", "cache = \"/a\" \"é\"\n", "test.toml:1: non-ASCII"},
      {"bare table name", "[socketmap.pöstfix]\n", "test.toml:1: non-ASCII"},
      {"CJK punctuation", "strict = true、\n", "test.toml:1: non-ASCII"},
      {"array element", "resolver = [\n  \"127.0.0.1\",\n  1é,\n]\n", "test.toml:3: non-ASCII"},
      {"inline table", "daemon = { user = \"a\", é = 1 }\n", "test.toml:1: non-ASCII"},
      // marzer/tomlplusplus#190: valid TOML, but toml++ 3.3 cannot read it.
      {"after a line-ending backslash", "cache = \"\"\"\\\n§/c.mdb\"\"\"\n",
       "test.toml:2: non-ASCII character right after a backslash"},
      {"after blanks and a line-ending backslash", "cache = \"\"\"/a\\  \n\n  é\"\"\"\n",
       "test.toml:3: non-ASCII character right after a backslash"},
      {"escaped", "cache = \"\"\"/a\\é\"\"\"\n", "right after a backslash"},
      {"escaped in a basic string", "cache = \"/a\\é\"\n", "right after a backslash"},
  };
  for (const BadRow& row : rows) {
    SCOPED_TRACE(row.name);
    auto config = parse(row.text);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().category, ErrorCategory::config);
    EXPECT_NE(config.error().reason.find(row.expected), std::string::npos) << config.error().reason;
  }
}

TEST(Config, non_ascii_in_strings_and_comments_is_kept) {
  auto config = parse(
      "\xEF\xBB\xBF# Konfiguration für mtasts — 日本語、コメント\n"
      "cache = \"/var/lib/mtasts/cäche.mdb\" # ü\n"
      "ca_file = '/etc/ssl/é、.pem'\n"
      "trust_anchor = \"\"\"\n/usr/share/dns/\\\n  root-ﻼ.key\"\"\"\n"
      "resolver = [ # é\n  \"127.0.0.1\", # ö\n  '::1', # ü\n]\n"
      "[daemon] # ß\n"
      "user = \"ünïcode\" # 、\n"
      "[socketmap.\"postfix\"] # ö\n");
  ASSERT_TRUE(config) << config.error().reason;
  EXPECT_EQ(config->cache_path, "/var/lib/mtasts/cäche.mdb");
  EXPECT_EQ(config->ca_file, "/etc/ssl/é、.pem");
  EXPECT_EQ(config->trust_anchor_file, "/usr/share/dns/root-ﻼ.key");
  EXPECT_EQ(config->resolvers, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_EQ(config->daemon.user, "ünïcode");
  EXPECT_EQ(config->daemon.socketmaps.size(), 1u);
}

// Strings go to open(), bind(), getpwnam(), inet_pton() and libunbound, which stop at a NUL:
// "127.0.0.1\0junk:25" used to pass as 127.0.0.1 (found by fuzz/fuzz_config.cpp).
TEST(Config, nul_in_a_string_is_refused) {
  const std::vector<BadRow> rows = {
      {"cache", "cache = \"/var/lib/mtasts/cache.mdb\\u0000.bak\"\n",
       "test.toml:1: cache: contains a NUL character"},
      {"user", "[daemon]\nuser = \"mtasts\\u0000root\"\n", "test.toml:2: user: contains a NUL"},
      {"socket", "[daemon]\nexim_socket = \"/run/a\\u0000b\"\n", "exim_socket: contains a NUL"},
      {"resolver", "resolver = \"127.0.0.1\\u0000:5353\"\n", "resolver: resolver \"127.0.0.1\\x00"},
      {"listen", "[daemon]\nexim_listen = [\"127.0.0.1\\u0000x:25\"]\n",
       "test.toml:2: exim_listen: listen address"},
  };
  for (const BadRow& row : rows) {
    SCOPED_TRACE(row.name);
    auto config = parse(row.text);
    ASSERT_FALSE(config);
    EXPECT_NE(config.error().reason.find(row.expected), std::string::npos) << config.error().reason;
  }
  EXPECT_FALSE(parse_listen_address(std::string("127.0.0.1\0junk:25", 17)));
  EXPECT_FALSE(parse_resolver_address(std::string("127.0.0.1\0:5353", 15)));
}

// Quoted keys may hold line breaks and control bytes; the message quotes and escapes them.
TEST(Config, odd_keys_stay_on_one_line) {
  const std::vector<BadRow> rows = {
      {"unknown key", "\"evil\\nkey\" = 1\n", "test.toml:1: \"evil\\nkey\": unknown key"},
      {"unknown daemon key", "[daemon]\n\"x\\ty\" = 1\n",
       "test.toml:2: daemon.\"x\\ty\": unknown key"},
      {"map name", "[socketmap.\"a\\r\\nb\"]\n", "socketmap.\"a\\r\\nb\": a map name is"},
      {"long key", "\"" + std::string(5000, 'k') + "\" = 1\n", "...: unknown key"},
      {"redefined key", "\"a\\nb\" = 1\n\"a\\nb\" = 2\n", "test.toml:2: "},
      {"control byte in the text", "cache = \"/a\x01\"\n", "test.toml:1: "},
  };
  for (const BadRow& row : rows) {
    SCOPED_TRACE(row.name);
    auto config = parse(row.text);
    ASSERT_FALSE(config);
    EXPECT_TRUE(one_line(config.error().reason)) << config.error().reason;
    EXPECT_LT(config.error().reason.size(), 400u);
    EXPECT_NE(config.error().reason.find(row.expected), std::string::npos) << config.error().reason;
  }
}

TEST(Config, inverted_backoff_names_its_line) {
  auto config = parse("fetch_backoff_min = 7200\nfetch_backoff_max = 3600\n");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().reason,
            "test.toml:2: fetch_backoff_max: 3600 is below fetch_backoff_min (7200)");
  config = parse("fetch_backoff_min = 86400\n");  // above the default maximum
  ASSERT_FALSE(config);
  EXPECT_TRUE(config.error().reason.starts_with("test.toml:1: fetch_backoff_max: 21600 is below"))
      << config.error().reason;
}

// mtastsd.toml(5): without any [socketmap.NAME] table the map "postfix" is served. A bare
// [socketmap] used to leave no map at all, so every request got "PERM unknown socketmap name".
// RFC 8461 §8.1: the TXT id is re-checked after the record's TTL, within [txt_min_ttl,
// txt_max_ttl]; recheck_interval is the old name of txt_max_ttl.
TEST(Config, txt_ttl_keys_and_the_old_recheck_interval) {
  auto config = parse("");
  ASSERT_TRUE(config) << config.error().reason;
  EXPECT_EQ(config->timing.txt_max_ttl, 3600);
  EXPECT_EQ(config->timing.txt_min_ttl, 1);

  config = parse("txt_max_ttl = 600\ntxt_min_ttl = 5\n");
  ASSERT_TRUE(config) << config.error().reason;
  EXPECT_EQ(config->timing.txt_max_ttl, 600);
  EXPECT_EQ(config->timing.txt_min_ttl, 5);

  config = parse("recheck_interval = 86400\n");
  ASSERT_TRUE(config) << config.error().reason;
  EXPECT_EQ(config->timing.txt_max_ttl, 86400);

  config = parse("txt_max_ttl = 600\nrecheck_interval = 86400\n");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().reason,
            "test.toml:2: recheck_interval: is the old name of txt_max_ttl; keep only txt_max_ttl "
            "(see mtasts.toml(5))");

  config = parse("txt_max_ttl = 60\ntxt_min_ttl = 120\n");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().reason, "test.toml:2: txt_min_ttl: 120 is above txt_max_ttl (60)");
  config = parse("txt_max_ttl = 0\n");
  ASSERT_FALSE(config);
  EXPECT_TRUE(config.error().reason.starts_with("test.toml:1: txt_max_ttl: 0 is out of range"))
      << config.error().reason;
  config = parse("txt_min_ttl = 0\n");
  ASSERT_FALSE(config);
  EXPECT_TRUE(config.error().reason.starts_with("test.toml:1: txt_min_ttl: 0 is out of range"))
      << config.error().reason;
}

TEST(Config, bare_socketmap_table_keeps_the_default_map) {
  for (const char* text : {"[socketmap]\n", "socketmap = {}\n"}) {
    SCOPED_TRACE(text);
    auto config = parse(text);
    ASSERT_TRUE(config) << config.error().reason;
    ASSERT_EQ(config->daemon.socketmaps.size(), 1u);
    EXPECT_EQ(config->daemon.socketmaps.begin()->first, "postfix");
  }
}

// DANE (docs/dane.md): on by default (in effect only with trust_anchor), mandatory DANE per
// domain (DANE-15, I-11), and the bounds of a DANE state's lifetime.
TEST(Config, dane_defaults) {
  auto config = parse("");
  ASSERT_TRUE(config) << config.error().reason;
  EXPECT_TRUE(config->dane);
  EXPECT_TRUE(config->dane_required.empty());
  EXPECT_EQ(config->dane_timing.min_ttl, 60);
  EXPECT_EQ(config->dane_timing.max_ttl, 3600);
  EXPECT_EQ(config->dane_timing.failure_retry, config->timing.dns_retry);
}

TEST(Config, DANE15_dane_keys) {
  auto config = parse(R"(dane = false
dane_required = ["Example.COM.", "b\u00FCcher.example", "mail.example.org"]
dane_min_ttl = 0
dane_max_ttl = 604800
dns_retry = 30
)");
  ASSERT_TRUE(config) << config.error().reason;
  EXPECT_FALSE(config->dane);
  // Normalized as lookups are: lower case, no root dot, A-labels.
  EXPECT_EQ(config->dane_required,
            (std::vector<std::string>{"example.com", "xn--bcher-kva.example", "mail.example.org"}));
  EXPECT_EQ(config->dane_timing.min_ttl, 0);
  EXPECT_EQ(config->dane_timing.max_ttl, 7 * 86400);
  EXPECT_EQ(config->dane_timing.failure_retry, 30);  // failures are re-checked after dns_retry

  auto equal = parse("dane = true\ndane_required = []\ndane_min_ttl = 300\ndane_max_ttl = 300\n");
  ASSERT_TRUE(equal) << equal.error().reason;
  EXPECT_TRUE(equal->dane);
  EXPECT_TRUE(equal->dane_required.empty());
  EXPECT_EQ(equal->dane_timing.min_ttl, 300);
  EXPECT_EQ(equal->dane_timing.max_ttl, 300);

  auto upper = parse("dane_min_ttl = 86400\ndane_max_ttl = 86400\n");
  ASSERT_TRUE(upper) << upper.error().reason;
  EXPECT_EQ(upper->dane_timing.min_ttl, 86400);
}

TEST(Config, bad_dane_values_name_file_line_and_key) {
  const std::vector<BadRow> rows = {
      {"dane not a bool", "dane = \"yes\"\n", "test.toml:1: dane: expected true or false"},
      {"dane a number", "cache = \"/tmp/c.mdb\"\ndane = 1\n",
       "test.toml:2: dane: expected true or false"},
      {"dane_required a string", "dane_required = \"example.com\"\n",
       "test.toml:1: dane_required: expected an array"},
      {"dane_required a table", "[dane_required]\n",
       "test.toml:1: dane_required: expected an array"},
      {"dane_required not strings", "dane_required = [1]\n",
       "test.toml:1: dane_required: expected strings"},
      {"dane_required one bad element", "dane_required = [\n  \"a.example\",\n  2,\n]\n",
       "test.toml:3: dane_required: expected strings"},
      {"dane_required not a domain", "dane_required = [\"not a domain\"]\n",
       "test.toml:1: dane_required: \"not a domain\""},
      {"dane_required one label", "dane_required = [\"localhost\"]\n",
       "test.toml:1: dane_required: \"localhost\""},
      {"dane_required an address", "dane_required = [\"192.0.2.1\"]\n",
       "test.toml:1: dane_required: \"192.0.2.1\""},
      {"dane_required empty string", "dane_required = [\"\"]\n", "test.toml:1: dane_required: "},
      {"dane_min_ttl negative", "dane_min_ttl = -1\n",
       "test.toml:1: dane_min_ttl: -1 is out of range [0, 86400]"},
      {"dane_min_ttl above a day", "dane_min_ttl = 86401\n",
       "test.toml:1: dane_min_ttl: 86401 is out of range [0, 86400]"},
      {"dane_min_ttl a string", "dane_min_ttl = \"60\"\n",
       "test.toml:1: dane_min_ttl: expected an integer"},
      {"dane_min_ttl a float", "dane_min_ttl = 60.0\n",
       "test.toml:1: dane_min_ttl: expected an integer"},
      {"dane_max_ttl negative", "dane_max_ttl = -5\n",
       "test.toml:1: dane_max_ttl: -5 is out of range [0, 604800]"},
      {"dane_max_ttl above seven days", "dane_max_ttl = 604801\n",
       "test.toml:1: dane_max_ttl: 604801 is out of range [0, 604800]"},
      {"dane_max_ttl a bool", "dane_max_ttl = true\n",
       "test.toml:1: dane_max_ttl: expected an integer"},
      {"dane_max_ttl below dane_min_ttl", "dane_min_ttl = 600\ndane_max_ttl = 599\n",
       "test.toml:2: dane_max_ttl: 599 is below dane_min_ttl (600)"},
      {"dane_max_ttl below dane_min_ttl, max first", "dane_max_ttl = 10\n\ndane_min_ttl = 20\n",
       "test.toml:1: dane_max_ttl: 10 is below dane_min_ttl (20)"},
      {"dane_min_ttl above the default maximum", "\ndane_min_ttl = 7200\n",
       "test.toml:2: dane_max_ttl: 3600 is below dane_min_ttl (7200)"},
      {"dane_max_ttl below the default minimum", "dane_max_ttl = 30\n",
       "test.toml:1: dane_max_ttl: 30 is below dane_min_ttl (60)"},
  };
  for (const BadRow& row : rows) {
    SCOPED_TRACE(row.name);
    auto config = parse(row.text);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().category, ErrorCategory::config);
    EXPECT_TRUE(one_line(config.error().reason)) << config.error().reason;
    EXPECT_NE(config.error().reason.find(row.expected), std::string::npos) << config.error().reason;
  }
}

TEST(Config, tlsrpt_table) {
  auto off = parse("");
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->tlsrpt.enabled);
  EXPECT_EQ(tlsrpt_store_path(*off), "/var/lib/mtasts/tlsrpt.mdb");

  auto config = parse(R"(
cache = "/srv/mtasts/cache.mdb"
[tlsrpt]
enabled = true
organization_name = "Example Mail"
contact_info = "tlsrpt@Mail.Example.NET"
sendmail = ["/usr/sbin/exim4", "-oi"]
send_window = 600
socket_mode = "0620"
)");
  ASSERT_TRUE(config) << config.error().reason;
  EXPECT_TRUE(config->tlsrpt.enabled);
  EXPECT_EQ(config->tlsrpt.submitter, "mail.example.net");  // contact_info's domain
  EXPECT_EQ(config->tlsrpt.mail_from, "tlsrpt-noreply@mail.example.net");
  EXPECT_EQ(config->tlsrpt.sendmail, (std::vector<std::string>{"/usr/sbin/exim4", "-oi"}));
  EXPECT_EQ(config->tlsrpt.send_window, 600);
  EXPECT_EQ(config->tlsrpt.socket_mode, 0620U);
  EXPECT_EQ(tlsrpt_store_path(*config), "/srv/mtasts/tlsrpt.mdb");
}

TEST(Config, bad_tlsrpt_values_are_refused) {
  const std::pair<const char*, const char*> rows[] = {
      {"[tlsrpt]\nenabled = true\ncontact_info = \"a@b.example\"\n", "organization_name"},
      {"[tlsrpt]\nenabled = true\norganization_name = \"x\"\n", "contact_info"},
      {"[tlsrpt]\ncontact_info = \"no-at-sign\"\n", "contact_info"},
      {"[tlsrpt]\ncontact_info = \"a b@c.example\"\n", "contact_info"},
      {"[tlsrpt]\nmail_from = \"-oQ@x.example\"\n", "mail_from"},
      {"[tlsrpt]\nsendmail = [\"sendmail\", \"-oi\"]\n", "sendmail"},
      {"[tlsrpt]\nsendmail = []\n", "sendmail"},
      {"[tlsrpt]\nsocket = \"relative.sock\"\n", "socket"},
      {"[tlsrpt]\nstore = \"relative.mdb\"\n", "store"},
      {"[tlsrpt]\nretention_days = 1\n", "retention_days"},
      {"[tlsrpt]\nsubmitter = \"not a domain\"\n", "submitter"},
      {"[tlsrpt]\nunknown = 1\n", "unknown"},
      {"tlsrpt = 1\n", "tlsrpt"},
  };
  for (const auto& [text, key] : rows) {
    auto config = parse(text);
    ASSERT_FALSE(config) << text;
    EXPECT_EQ(config.error().category, ErrorCategory::config);
    EXPECT_NE(config.error().reason.find("test.toml:"), std::string::npos) << config.error().reason;
    EXPECT_NE(config.error().reason.find(key), std::string::npos) << config.error().reason;
  }
}

}  // namespace
}  // namespace mtasts
