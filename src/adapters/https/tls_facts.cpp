#include "adapters/https/tls_facts.hpp"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>

namespace mtasts::https {
namespace {

// Certificates can be hostile: every text taken from one is bounded.
constexpr std::size_t kMaxName = 300;
constexpr int kMaxSans = 20;
constexpr int kMaxChain = 8;

// In place: g++ 12 reports a false -Warray-bounds for substr(...) + "..." (GCC PR 105651).
void shorten(std::string& text) {
  if (text.size() <= kMaxName) return;
  text.resize(kMaxName);
  text += "...";
}

std::string name_text(const X509_NAME* name) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || name == nullptr) return "?";
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  // BIO_get_mem_data() spelled out: the macro hides a C-style cast.
  const long size = BIO_ctrl(bio.get(), BIO_CTRL_INFO, 0, &data);
  if (size <= 0 || data == nullptr) return "(empty)";
  std::string text(data, static_cast<std::size_t>(size));
  shorten(text);
  return text;
}

std::int64_t unix_time(const ASN1_TIME* time) {
  std::tm tm{};
  if (time == nullptr || ASN1_TIME_to_tm(time, &tm) != 1) return 0;
  return timegm(&tm);
}

std::string ip_text(const ASN1_OCTET_STRING* address) {
  const int length = ASN1_STRING_length(address);
  const unsigned char* bytes = ASN1_STRING_get0_data(address);
  char buffer[INET6_ADDRSTRLEN] = {};
  if (length == 4 && inet_ntop(AF_INET, bytes, buffer, sizeof buffer) != nullptr) return buffer;
  if (length == 16 && inet_ntop(AF_INET6, bytes, buffer, sizeof buffer) != nullptr) return buffer;
  return "?";
}

std::vector<std::string> san_list(X509* cert) {
  std::vector<std::string> sans;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return sans;
  // The sk_ macros hide C-style casts; their typed inline checks do not.
  const OPENSSL_STACK* stack = ossl_check_const_GENERAL_NAME_sk_type(names);
  const int count = OPENSSL_sk_num(stack);
  for (int i = 0; i < count && i < kMaxSans; ++i) {
    const auto* name = static_cast<const GENERAL_NAME*>(OPENSSL_sk_value(stack, i));
    if (name->type == GEN_DNS) {
      const auto* text = reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName));
      std::string dns(text, static_cast<std::size_t>(ASN1_STRING_length(name->d.dNSName)));
      shorten(dns);
      sans.push_back("DNS:" + dns);
    } else if (name->type == GEN_IPADD) {
      sans.push_back("IP:" + ip_text(name->d.iPAddress));
    }
  }
  if (count > kMaxSans) sans.push_back("...");
  GENERAL_NAMES_free(names);
  return sans;
}

CertFacts cert_facts(X509* cert) {
  CertFacts facts;
  facts.subject = name_text(X509_get_subject_name(cert));
  facts.issuer = name_text(X509_get_issuer_name(cert));
  facts.sans = san_list(cert);
  facts.not_before = unix_time(X509_get0_notBefore(cert));
  facts.not_after = unix_time(X509_get0_notAfter(cert));
  return facts;
}

}  // namespace

TlsFacts tls_facts(SSL* ssl, const std::string& host, bool finished) {
  TlsFacts facts;
  if (finished) facts.version = SSL_get_version(ssl);
  // On the client side the chain as sent, leaf first; kept by OpenSSL after a refused one too.
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
  if (chain == nullptr) return facts;
  const OPENSSL_STACK* stack = ossl_check_const_X509_sk_type(chain);
  const int count = OPENSSL_sk_num(stack);
  if (count <= 0) return facts;
  for (int i = 0; i < count && i < kMaxChain; ++i) {
    facts.chain.push_back(cert_facts(static_cast<X509*>(OPENSSL_sk_value(stack, i))));
  }
  auto* leaf = static_cast<X509*>(OPENSSL_sk_value(stack, 0));
  facts.name_matches =
      X509_check_host(leaf, host.data(), host.size(),
                      X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                      nullptr) == 1;
  const long verify = SSL_get_verify_result(ssl);
  // A name mismatch is already said by name_matches, in more words.
  if (verify != X509_V_OK && verify != X509_V_ERR_HOSTNAME_MISMATCH) {
    facts.verify_error = X509_verify_cert_error_string(verify);
  }
  return facts;
}

}  // namespace mtasts::https
