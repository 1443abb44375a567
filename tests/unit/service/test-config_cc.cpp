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
cdb_export = "/var/lib/mtasts/exim.cdb"
cdb_export_interval = 1
metrics_listen = "[::1]:9461"
)");
  ASSERT_TRUE(config) << config.error().reason;
  const DaemonConfig& d = config->daemon;
  EXPECT_FALSE(d.refresh);
  EXPECT_EQ(d.refresh_concurrency, 2u);
  EXPECT_EQ(d.refresh_scan_interval, 1);
  EXPECT_EQ(d.refresh_timing, (RefreshTiming{0, 60, 0}));
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

TEST(Config, listen_addresses) {
  EXPECT_EQ(*parse_listen_address("127.0.0.1:8461"), (ListenAddress{"127.0.0.1", 8461}));
  EXPECT_EQ(*parse_listen_address("[::1]:25"), (ListenAddress{"::1", 25}));
  EXPECT_FALSE(parse_listen_address("[::1]"));
  EXPECT_FALSE(parse_listen_address("127.0.0.1:65536"));
  EXPECT_FALSE(parse_listen_address(":25"));
}

}  // namespace
}  // namespace mtasts
