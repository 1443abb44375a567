// Postfix's TLSRPT datagrams (libtlsrpt, design §7): byte-exact datagrams as libtlsrpt 0.5 writes
// them, parsed into sessions; malformed ones refused with a reason naming the key.
#include "core/tlsrpt_datagram.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

namespace mtasts {
namespace {

using tlsrpt::FailureKey;
using tlsrpt::PolicyOutcome;
using tlsrpt::PolicyType;
using tlsrpt::ResultType;
using tlsrpt::Session;

// Writes what libtlsrpt 0.5 (libtlsrpt.c) sends, call for call: the same keys, the same
// separators (a space after ":" before a string value, none before a number), the same escapes.
class LibtlsrptWriter {
 public:
  LibtlsrptWriter(const std::string& domain, const std::string& record) {
    out_ = "{";
    out_ += first_attribute("dpv", "1");
    out_ += "," + first_attribute("d", domain);
    out_ += "," + first_attribute("pr", record);
  }
  void init_policy(int type, const char* policy_domain) {
    out_ += policies_ == 0 ? ",\"policies\":[{" : ",{";
    out_ += "\"policy-type\":" + std::to_string(type);
    if (policy_domain != nullptr) out_ += "," + first_attribute("policy-domain", policy_domain);
    ++policies_;
    strings_.clear();
    mx_.clear();
    failures_.clear();
    failure_count_ = 0;
  }
  void add_policy_string(const std::string& text) {
    strings_ += (strings_.empty() ? "\"" : ",\"") + escape(text) + "\"";
  }
  void add_mx_host_pattern(const std::string& text) {
    mx_ += (mx_.empty() ? "\"" : ",\"") + escape(text) + "\"";
  }
  void add_failure(int code, const char* sending_ip, const char* mx_name, const char* helo,
                   const char* mx_ip, const char* additional, const char* reason) {
    ++failure_count_;
    failures_ += failures_.empty() ? "{" : ",{";
    failures_ += "\"c\":" + std::to_string(code);
    const auto optional = [&](const char* key, const char* value) {
      if (value != nullptr) failures_ += "," + first_attribute(key, value);
    };
    optional("s", sending_ip);
    optional("n", mx_name);
    optional("h", helo);
    optional("r", mx_ip);
    optional("a", additional);
    optional("f", reason);
    failures_ += "}";
  }
  void finish_policy(int final_result) {
    if (!strings_.empty()) out_ += ",\"policy-string\":[" + strings_ + "]";
    if (!mx_.empty()) out_ += ",\"mx-host\":[" + mx_ + "]";
    if (!failures_.empty()) out_ += ",\"failure-details\":[" + failures_ + "]";
    out_ +=
        ",\"t\":" + std::to_string(failure_count_) + ",\"f\":" + std::to_string(final_result) + "}";
  }
  std::string finish() const { return out_ + (policies_ > 0 ? "]" : "") + "}"; }

 private:
  static std::string escape(const std::string& text) {
    std::string out;
    for (char c : text) {
      const auto byte = static_cast<unsigned char>(c);
      switch (c) {
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '"':
          out += "\\\"";
          break;
        default:
          if (byte < 0x20 || byte == 0x7f) {
            char buffer[8];
            std::snprintf(buffer, sizeof buffer, "\\u%04x", byte);
            out += buffer;
          } else {
            out += c;  // bytes above 0x7f go out as they are
          }
      }
    }
    return out;
  }
  static std::string first_attribute(const std::string& key, const std::string& value) {
    return "\"" + key + "\": \"" + escape(value) + "\"";
  }

  std::string out_;
  std::string strings_;
  std::string mx_;
  std::string failures_;
  int policies_ = 0;
  int failure_count_ = 0;
};

constexpr const char* kRecord = "v=TLSRPTv1;rua=mailto:reports@example.com";

Session parsed(const std::string& datagram) {
  auto session = parse_tlsrpt_datagram(datagram);
  EXPECT_TRUE(session.has_value()) << datagram.substr(0, 300) << "\n -> " << session.error().reason;
  return session ? *session : Session{};
}

std::string refused(const std::string& datagram) {
  auto session = parse_tlsrpt_datagram(datagram);
  EXPECT_FALSE(session.has_value()) << datagram;
  if (session) return "";
  EXPECT_EQ(session.error().category, ErrorCategory::session_report);
  return session.error().reason;
}

FailureKey failure(ResultType result, std::string sending, std::string mx_name, std::string helo,
                   std::string mx_ip, std::string additional, std::string reason) {
  return FailureKey{result,           std::move(sending),    std::move(mx_name), std::move(helo),
                    std::move(mx_ip), std::move(additional), std::move(reason)};
}

TEST(TlsrptDatagram, writer_matches_libtlsrpt_demo_bytes) {
  // libtlsrpt's demo.c, as the library serializes it.
  const std::string expected =
      R"({"dpv": "1","d": "example.com","pr": "v=TLSRPTv1;rua=mailto:reports@example.com",)"
      R"("policies":[{"policy-type":2,"policy-domain": "company-y.example",)"
      R"("policy-string":["version: STSv1","mode: testing","mx: *.mail.company-y.example",)"
      R"("max_age: 86400"],"mx-host":["*.mail.company-y.example"],"failure-details":[)"
      R"({"c":302,"s": "1.2.3.4","n": "mailin.example.com","h": "test-ehlo.example.com",)"
      R"("r": "11.22.33.44","a": "This is additional information","f": "999 TEST REASON CODE"},)"
      R"({"c":303,"s": "1.2.3.5","n": "mailin.example.com","h": "test-ehlo.example.com",)"
      R"("r": "11.22.33.55","a": "This is additional information",)"
      R"("f": "123 ANOTHER TEST REASON CODE"}],"t":2,"f":1}]})";
  LibtlsrptWriter writer("example.com", kRecord);
  writer.init_policy(2, "company-y.example");
  for (const char* line :
       {"version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"}) {
    writer.add_policy_string(line);
  }
  writer.add_mx_host_pattern("*.mail.company-y.example");
  writer.add_failure(302, "1.2.3.4", "mailin.example.com", "test-ehlo.example.com", "11.22.33.44",
                     "This is additional information", "999 TEST REASON CODE");
  writer.add_failure(303, "1.2.3.5", "mailin.example.com", "test-ehlo.example.com", "11.22.33.55",
                     "This is additional information", "123 ANOTHER TEST REASON CODE");
  writer.finish_policy(1);
  ASSERT_EQ(writer.finish(), expected);

  const Session session = parsed(expected);
  EXPECT_EQ(session.report_domain, "example.com");
  EXPECT_EQ(session.tlsrpt_record, kRecord);
  ASSERT_EQ(session.policies.size(), 1u);
  const PolicyOutcome& policy = session.policies[0];
  EXPECT_EQ(policy.policy.type, PolicyType::sts);
  EXPECT_EQ(policy.policy.domain, "company-y.example");
  EXPECT_EQ(policy.policy.policy_strings,
            (std::vector<std::string>{"version: STSv1", "mode: testing",
                                      "mx: *.mail.company-y.example", "max_age: 86400"}));
  EXPECT_EQ(policy.policy.mx_hosts, std::vector<std::string>{"*.mail.company-y.example"});
  EXPECT_TRUE(policy.failed);
  EXPECT_EQ(policy.failures,
            (std::vector<FailureKey>{
                failure(ResultType::sts_policy_invalid, "1.2.3.4", "mailin.example.com",
                        "test-ehlo.example.com", "11.22.33.44", "This is additional information",
                        "999 TEST REASON CODE"),
                failure(ResultType::sts_webpki_invalid, "1.2.3.5", "mailin.example.com",
                        "test-ehlo.example.com", "11.22.33.55", "This is additional information",
                        "123 ANOTHER TEST REASON CODE")}));
}

TEST(TlsrptDatagram, success_without_policy) {
  const Session session =
      parsed(R"({"dpv": "1","d": "Example.COM.","pr": "","policies":[{"policy-type":9,)"
             R"("policy-domain": "example.com","t":0,"f":0}]})");
  EXPECT_EQ(session.report_domain, "example.com");
  EXPECT_EQ(session.tlsrpt_record, "");
  ASSERT_EQ(session.policies.size(), 1u);
  EXPECT_EQ(session.policies[0].policy.type, PolicyType::no_policy_found);
  EXPECT_EQ(session.policies[0].policy.domain, "example.com");
  EXPECT_TRUE(session.policies[0].policy.policy_strings.empty());
  EXPECT_TRUE(session.policies[0].policy.mx_hosts.empty());
  EXPECT_FALSE(session.policies[0].failed);
  EXPECT_TRUE(session.policies[0].failures.empty());
}

TEST(TlsrptDatagram, no_policy_found_without_policy_domain_takes_d) {
  // libtlsrpt leaves policy-domain out when the MTA passes NULL.
  const Session session =
      parsed(R"({"dpv": "1","d": "b\u00FCcher.example","pr": "v=TLSRPTv1; rua=mailto:r@x.example",)"
             R"("policies":[{"policy-type":9,"t":0,"f":0}]})");
  EXPECT_EQ(session.report_domain, "xn--bcher-kva.example");
  EXPECT_EQ(session.policies[0].policy.domain, "xn--bcher-kva.example");
}

TEST(TlsrptDatagram, sts_success) {
  LibtlsrptWriter writer("mail.example.org", "v=TLSRPTv1; rua=https://r.example.org/v1");
  writer.init_policy(2, "MAIL.example.org");
  writer.add_policy_string("version: STSv1");
  writer.add_policy_string("mode: enforce");
  writer.add_policy_string("mx: mx1.example.org");
  writer.add_policy_string("mx: *.backup.example.org");
  writer.add_policy_string("max_age: 604800");
  writer.add_mx_host_pattern("mx1.example.org");
  writer.add_mx_host_pattern("*.backup.example.org");
  writer.finish_policy(0);
  const std::string datagram = writer.finish();
  EXPECT_EQ(
      datagram,
      R"({"dpv": "1","d": "mail.example.org","pr": "v=TLSRPTv1; rua=https://r.example.org/v1",)"
      R"("policies":[{"policy-type":2,"policy-domain": "MAIL.example.org","policy-string":[)"
      R"("version: STSv1","mode: enforce","mx: mx1.example.org","mx: *.backup.example.org",)"
      R"("max_age: 604800"],"mx-host":["mx1.example.org","*.backup.example.org"],)"
      R"("t":0,"f":0}]})");
  const Session session = parsed(datagram);
  ASSERT_EQ(session.policies.size(), 1u);
  const PolicyOutcome& policy = session.policies[0];
  EXPECT_EQ(policy.policy.type, PolicyType::sts);
  EXPECT_EQ(policy.policy.domain, "mail.example.org");
  EXPECT_EQ(policy.policy.policy_strings.size(), 5u);
  EXPECT_EQ(policy.policy.mx_hosts,
            (std::vector<std::string>{"mx1.example.org", "*.backup.example.org"}));
  EXPECT_FALSE(policy.failed);
  EXPECT_TRUE(policy.failures.empty());
}

TEST(TlsrptDatagram, every_failure_code) {
  const std::vector<std::pair<int, ResultType>> codes = {
      {201, ResultType::starttls_not_supported},
      {202, ResultType::certificate_host_mismatch},
      {203, ResultType::certificate_not_trusted},
      {204, ResultType::certificate_expired},
      {205, ResultType::validation_failure},
      {301, ResultType::sts_policy_fetch_error},
      {302, ResultType::sts_policy_invalid},
      {303, ResultType::sts_webpki_invalid},
      {304, ResultType::tlsa_invalid},
      {305, ResultType::dnssec_invalid},
      {306, ResultType::dane_required},
  };
  for (const auto& [code, type] : codes) {
    SCOPED_TRACE(code);
    LibtlsrptWriter writer("example.com", kRecord);
    writer.init_policy(2, "example.com");
    writer.add_policy_string("version: STSv1");
    writer.add_policy_string("mode: testing");
    writer.add_policy_string("mx: mx.example.com");
    writer.add_policy_string("max_age: 86400");
    writer.add_mx_host_pattern("mx.example.com");
    // Postfix passes NULL for what it does not know: those keys are left out.
    writer.add_failure(code, "192.0.2.1", "MX.Example.com.", nullptr, "2001:DB8::0:25", nullptr,
                       "some reason");
    writer.finish_policy(1);
    const Session session = parsed(writer.finish());
    ASSERT_EQ(session.policies.size(), 1u);
    ASSERT_EQ(session.policies[0].failures.size(), 1u);
    EXPECT_TRUE(session.policies[0].failed);
    EXPECT_EQ(session.policies[0].failures[0],
              failure(type, "192.0.2.1", "mx.example.com", "", "2001:db8::25", "", "some reason"));
  }
}

TEST(TlsrptDatagram, dane_failure_with_several_policy_strings) {
  const std::string datagram =
      R"({"dpv": "1","d": "example.net","pr": "v=TLSRPTv1; rua=mailto:tlsrpt@example.net",)"
      R"("policies":[{"policy-type":1,"policy-domain": "mx.example.net","policy-string":[)"
      R"("3 1 1 8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d",)"
      R"("2 0 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"],)"
      R"("failure-details":[{"c":304,"s": "198.51.100.7","n": "mx.example.net",)"
      R"("h": "mx.example.net","r": "2001:db8:0::25","f": "no TLSA record matched"}],)"
      R"("t":1,"f":1}]})";
  const Session session = parsed(datagram);
  EXPECT_EQ(session.report_domain, "example.net");
  ASSERT_EQ(session.policies.size(), 1u);
  const PolicyOutcome& policy = session.policies[0];
  EXPECT_EQ(policy.policy.type, PolicyType::tlsa);
  EXPECT_EQ(policy.policy.domain, "mx.example.net");
  EXPECT_EQ(policy.policy.policy_strings,
            (std::vector<std::string>{
                "3 1 1 8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d",
                "2 0 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"}));
  EXPECT_TRUE(policy.policy.mx_hosts.empty());
  EXPECT_TRUE(policy.failed);
  EXPECT_EQ(policy.failures, std::vector<FailureKey>{failure(
                                 ResultType::tlsa_invalid, "198.51.100.7", "mx.example.net",
                                 "mx.example.net", "2001:db8::25", "", "no TLSA record matched")});
}

TEST(TlsrptDatagram, two_policies_in_one_datagram) {
  LibtlsrptWriter writer("example.com", kRecord);
  writer.init_policy(1, "mx1.example.com");
  writer.add_policy_string("3 1 1 aabbcc");
  writer.add_failure(305, "192.0.2.1", "mx1.example.com", nullptr, "192.0.2.25", nullptr,
                     "bogus TLSA RRset");
  writer.finish_policy(1);
  writer.init_policy(2, "example.com");
  writer.add_policy_string("version: STSv1");
  writer.add_policy_string("mode: enforce");
  writer.add_policy_string("mx: *.example.com");
  writer.add_policy_string("max_age: 86400");
  writer.add_mx_host_pattern("*.example.com");
  // One MX failed, the next worked: failure details, but the final result is success.
  writer.add_failure(204, "192.0.2.1", "mx1.example.com", "mx1.example.com", "192.0.2.25", "", "");
  writer.finish_policy(0);
  const Session session = parsed(writer.finish());
  ASSERT_EQ(session.policies.size(), 2u);
  EXPECT_EQ(session.policies[0].policy.type, PolicyType::tlsa);
  EXPECT_EQ(session.policies[0].policy.domain, "mx1.example.com");
  EXPECT_TRUE(session.policies[0].failed);
  EXPECT_EQ(
      session.policies[0].failures,
      std::vector<FailureKey>{failure(ResultType::dnssec_invalid, "192.0.2.1", "mx1.example.com",
                                      "", "192.0.2.25", "", "bogus TLSA RRset")});
  EXPECT_EQ(session.policies[1].policy.type, PolicyType::sts);
  EXPECT_FALSE(session.policies[1].failed);
  // Empty strings are absent fields.
  EXPECT_EQ(
      session.policies[1].failures,
      std::vector<FailureKey>{failure(ResultType::certificate_expired, "192.0.2.1",
                                      "mx1.example.com", "mx1.example.com", "192.0.2.25", "", "")});
}

TEST(TlsrptDatagram, older_libtlsrpt_without_dpv_and_pr) {
  const Session session =
      parsed(R"({"d": "example.com","policies":[{"policy-type":9,"policy-domain": "example.com",)"
             R"("t":0,"f":0}]})");
  EXPECT_EQ(session.report_domain, "example.com");
  EXPECT_EQ(session.tlsrpt_record, "");
  ASSERT_EQ(session.policies.size(), 1u);
}

TEST(TlsrptDatagram, escapes_unknown_keys_and_whitespace) {
  LibtlsrptWriter writer("example.com", kRecord);
  writer.init_policy(2, "example.com");
  writer.add_policy_string("mx:\tmx.example.com");
  writer.add_failure(205, "192.0.2.1", "mx.example.com", nullptr, "192.0.2.2", nullptr,
                     "said \"no\"\\\r\nbye");
  writer.finish_policy(1);
  std::string datagram = writer.finish();
  const Session session = parsed(datagram);
  // Control characters (tab included) become spaces; quotes and backslashes stay.
  EXPECT_EQ(session.policies[0].policy.policy_strings,
            std::vector<std::string>{"mx: mx.example.com"});
  EXPECT_EQ(session.policies[0].failures[0].failure_reason_code, "said \"no\"\\  bye");

  // A later libtlsrpt may add keys; pretty-printed JSON is still JSON.
  const Session extended = parsed(
      "{\n  \"dpv\" : \"1\", \"d\":\"example.com\", \"x-new\": {\"deep\": [1, 2.5, null]},\n"
      "  \"policies\": [ {\"policy-type\": 9, \"t\": 0, \"f\": 0, \"z\": true} ]\n}\n");
  EXPECT_EQ(extended.policies[0].policy.type, PolicyType::no_policy_found);
}

TEST(TlsrptDatagram, size_limit_is_exact) {
  const std::string body =
      R"({"dpv": "1","d": "example.com","policies":[{"policy-type":9,"t":0,"f":0}]})";
  std::string datagram = body + std::string(kMaxTlsrptDatagram - body.size(), ' ');
  ASSERT_EQ(datagram.size(), kMaxTlsrptDatagram);
  EXPECT_EQ(parsed(datagram).report_domain, "example.com");
  datagram += ' ';
  EXPECT_EQ(refused(datagram), "datagram: 65537 octets, at most 65536 allowed");
}

TEST(TlsrptDatagram, malformed_datagrams_name_the_key) {
  const auto policy = [](const std::string& inside) {
    return R"({"dpv": "1","d": "example.com","policies":[)" + inside + "]}";
  };
  const std::string ok = R"({"policy-type":9,"t":0,"f":0})";
  struct Row {
    const char* name;
    std::string datagram;
    std::string reason;  // the whole reason, or its start when it ends in "*"
  };
  const std::vector<Row> rows = {
      {"empty", "", "not JSON: *"},
      {"not JSON", "tlsrpt example.com", "not JSON: *"},
      {"truncated", R"({"dpv": "1","d": "example.com","policies":[{"policy-ty)", "not JSON: *"},
      {"trailing garbage", policy(ok) + "x", "not JSON: *"},
      {"two objects", policy(ok) + policy(ok), "not JSON: *"},
      // nlohmann's lexer would take NUL for the end of input and ignore what follows.
      {"NUL after the object", policy(ok) + std::string(1, '\0') + "junk",
       "datagram: NUL octet at offset 74"},
      {"invalid UTF-8", R"({"d": "ex)" + std::string("\xff") + R"(.com","policies":[]})",
       "not JSON: *"},
      {"comment", "/* hi */" + policy(ok), "not JSON: *"},
      {"array", "[" + policy(ok) + "]", "datagram: expected a JSON object, found array"},
      {"string", R"("dpv")", "datagram: expected a JSON object, found string"},
      {"wrong dpv", R"({"dpv": "2","d": "example.com","policies":[)" + ok + "]}",
       R"(dpv: unsupported datagram protocol version "2" (expected "1"))"},
      {"numeric dpv", R"({"dpv":1,"d": "example.com","policies":[)" + ok + "]}",
       R"(dpv: unsupported datagram protocol version 1 (expected "1"))"},
      {"duplicate d", R"({"dpv": "1","d": "a.example","d": "b.example","policies":[)" + ok + "]}",
       "d: duplicate key"},
      {"duplicate deep key",
       policy(ok + R"(,{"policy-type":2,"policy-domain": "example.com","failure-details":[)"
                   R"({"c":201},{"c":202,"c":203}],"t":2,"f":1})"),
       "policies[1].failure-details[1].c: duplicate key"},
      {"duplicate key in an unknown object", R"({"x":{"y":1,"y":2},"d": "example.com"})",
       "x.y: duplicate key"},
      {"missing d", R"({"dpv": "1","policies":[)" + ok + "]}", "d: missing (the recipient domain)"},
      {"d not a string", R"({"d":7,"policies":[)" + ok + "]}",
       "d: expected a string, found number"},
      {"d not a domain", R"({"d": "exa mple.com","policies":[)" + ok + "]}", "d: *"},
      {"d an address", R"({"d": "192.0.2.1","policies":[)" + ok + "]}", "d: *"},
      {"missing policies", R"({"d": "example.com"})", "policies: missing"},
      {"empty policies", R"({"d": "example.com","policies":[]})", "policies: empty array"},
      {"policies not an array", R"({"d": "example.com","policies":{}})",
       "policies: expected an array, found object"},
      {"policy not an object", policy("9"), "policies[0]: expected an object, found number"},
      {"missing policy-type", policy(R"({"t":0,"f":0})"), "policies[0].policy-type: missing"},
      {"unknown policy-type", policy(ok + R"(,{"policy-type":3,"t":0,"f":0})"),
       "policies[1].policy-type: unknown policy type 3 (expected 1 tlsa, 2 sts or 9 "
       "no-policy-found)"},
      {"policy-type float", policy(R"({"policy-type":2.0,"t":0,"f":0})"),
       "policies[0].policy-type: expected an integer, found number"},
      {"policy-type string", policy(R"({"policy-type":"2","t":0,"f":0})"),
       "policies[0].policy-type: expected an integer, found string"},
      {"sts without policy-domain", policy(R"({"policy-type":2,"t":0,"f":0})"),
       "policies[0].policy-domain: missing; required for policy-type 2 (sts)"},
      {"tlsa without policy-domain", policy(R"({"policy-type":1,"t":0,"f":0})"),
       "policies[0].policy-domain: missing; required for policy-type 1 (tlsa)"},
      {"bad policy-domain",
       policy(R"({"policy-type":2,"policy-domain": "-x.example","t":0,"f":0})"),
       "policies[0].policy-domain: *"},
      {"policy-string not strings",
       policy(R"({"policy-type":2,"policy-domain": "example.com","policy-string":["a",1],)"
              R"("t":0,"f":0})"),
       "policies[0].policy-string[1]: expected a string, found number"},
      {"mx-host not an array",
       policy(R"({"policy-type":2,"policy-domain": "example.com","mx-host": "mx","t":0,"f":0})"),
       "policies[0].mx-host: expected an array, found string"},
      {"unknown code",
       policy(ok + R"(,{"policy-type":2,"policy-domain": "example.com","failure-details":[)"
                   R"({"c":999}],"t":1,"f":1})"),
       "policies[1].failure-details[0].c: unknown result code 999"},
      {"internal code 901",
       policy(R"({"policy-type":9,"failure-details":[{"c":901}],"t":1,"f":1})"),
       "policies[0].failure-details[0].c: unknown result code 901"},
      {"missing code",
       policy(R"({"policy-type":9,"failure-details":[{"s": "192.0.2.1"}],)"
              R"("t":1,"f":1})"),
       "policies[0].failure-details[0].c: missing (the result code)"},
      {"failure not an object", policy(R"({"policy-type":9,"failure-details":[201],"t":1,"f":1})"),
       "policies[0].failure-details[0]: expected an object, found number"},
      {"t too small",
       policy(R"({"policy-type":9,"failure-details":[{"c":201},{"c":202}],)"
              R"("t":1,"f":1})"),
       "policies[0].t: says 1 failure details, the policy has 2"},
      {"t without details", policy(R"({"policy-type":9,"t":1,"f":1})"),
       "policies[0].t: says 1 failure details, the policy has 0"},
      {"negative t", policy(R"({"policy-type":9,"t":-1,"f":0})"),
       "policies[0].t: says -1 failure details, the policy has 0"},
      {"missing t", policy(R"({"policy-type":9,"f":0})"),
       "policies[0].t: missing (the number of failure details)"},
      {"missing f", policy(R"({"policy-type":9,"t":0})"),
       "policies[0].f: missing (the final result)"},
      {"f out of range", policy(R"({"policy-type":9,"t":0,"f":2})"),
       "policies[0].f: final result 2 (expected 0 success or 1 failure)"},
      {"f boolean", policy(R"({"policy-type":9,"t":0,"f":true})"),
       "policies[0].f: expected an integer, found boolean"},
      {"huge number", policy(R"({"policy-type":18446744073709551615,"t":0,"f":0})"),
       "policies[0].policy-type: expected an integer, found number"},
      {"bad sending IP",
       policy(R"({"policy-type":9,"failure-details":[{"c":201,"s": "192.0.2.300"}],"t":1,"f":1})"),
       R"(policies[0].failure-details[0].s: not an IPv4 or IPv6 address: "192.0.2.300")"},
      {"bad receiving IP",
       policy(R"({"policy-type":9,"failure-details":[{"c":201,"r": "mx.example.com"}],)"
              R"("t":1,"f":1})"),
       R"(policies[0].failure-details[0].r: not an IPv4 or IPv6 address: "mx.example.com")"},
      {"IP not a string",
       policy(R"({"policy-type":9,"failure-details":[{"c":201,"r":3232235777}],"t":1,"f":1})"),
       "policies[0].failure-details[0].r: expected a string, found number"},
      {"helo not a string",
       policy(R"({"policy-type":9,"failure-details":[{"c":201,"h":null}],"t":1,"f":1})"),
       "policies[0].failure-details[0].h: expected a string, found null"},
      {"pr not a string", R"({"d": "example.com","pr":null,"policies":[)" + ok + "]}",
       "pr: expected a string, found null"},
      {"deep nesting", R"({"d": "example.com","x":[[[[[[[[[[1]]]]]]]]]],"policies":[)" + ok + "]}",
       "x[0][0][0][0][0][0][0]: nested deeper than 8 levels"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    const std::string reason = refused(row.datagram);
    if (row.reason.ends_with('*')) {
      EXPECT_TRUE(reason.starts_with(row.reason.substr(0, row.reason.size() - 1))) << reason;
      EXPECT_GT(reason.size(), row.reason.size()) << reason;
    } else {
      EXPECT_EQ(reason, row.reason);
    }
    // One line, nothing an admin's log could be forged with.
    EXPECT_EQ(reason.find_first_of("\r\n"), std::string::npos) << reason;
  }
}

TEST(TlsrptDatagram, list_and_string_bounds) {
  const auto with_policy = [](const std::string& inside) {
    return R"({"d": "example.com","policies":[)" + inside + "]}";
  };
  const std::string one = R"({"policy-type":9,"t":0,"f":0})";
  std::string sixteen = one;
  for (int i = 1; i < 16; ++i) sixteen += "," + one;
  EXPECT_EQ(parsed(with_policy(sixteen)).policies.size(), 16u);
  EXPECT_EQ(refused(with_policy(sixteen + "," + one)), "policies: 17 entries, at most 16 allowed");

  const auto strings = [&](int count, std::size_t length) {
    std::string list;
    for (int i = 0; i < count; ++i) {
      list += (i == 0 ? "\"" : ",\"") + std::string(length, 'x') + "\"";
    }
    return with_policy(R"({"policy-type":2,"policy-domain": "example.com","policy-string":[)" +
                       list + R"(],"t":0,"f":0})");
  };
  // 64 strings of the maximum length would not fit in one datagram.
  EXPECT_EQ(parsed(strings(64, 1000)).policies[0].policy.policy_strings.size(), 64u);
  EXPECT_EQ(parsed(strings(1, 1024)).policies[0].policy.policy_strings[0].size(), 1024u);
  EXPECT_EQ(refused(strings(65, 1)), "policies[0].policy-string: 65 entries, at most 64 allowed");
  EXPECT_EQ(refused(strings(2, 1025)), "policies[0].policy-string[0]: longer than 1024 octets");

  std::string details;
  for (int i = 0; i < 65; ++i) details += std::string(i == 0 ? "" : ",") + R"({"c":201})";
  EXPECT_EQ(refused(with_policy(R"({"policy-type":9,"failure-details":[)" + details +
                                R"(],"t":65,"f":1})")),
            "policies[0].failure-details: 65 entries, at most 64 allowed");
}

}  // namespace
}  // namespace mtasts
