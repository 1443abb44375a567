#include "daemon/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace mtasts::daemon {
namespace {

template <class Id>
bool parse_id(std::string_view text, Id& out) {
  unsigned long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return false;
  out = static_cast<Id>(value);
  return static_cast<unsigned long>(out) == value;
}

}  // namespace

std::expected<uid_t, std::string> lookup_user(std::string_view name, gid_t* primary_group) {
  const std::string text(name);
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  const int rc = ::getpwnam_r(text.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (rc == 0 && found != nullptr) {
    if (primary_group != nullptr) *primary_group = found->pw_gid;
    return found->pw_uid;
  }
  uid_t uid = 0;
  if (parse_id(name, uid)) {
    if (primary_group != nullptr) {
      passwd* by_id = nullptr;
      *primary_group =
          (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &by_id) == 0 && by_id != nullptr)
              ? by_id->pw_gid
              : static_cast<gid_t>(uid);
    }
    return uid;
  }
  return std::unexpected(fmt::format("unknown user \"{}\"{}", text,
                                     rc != 0 ? fmt::format(": {}", std::strerror(rc)) : ""));
}

std::expected<gid_t, std::string> lookup_group(std::string_view name) {
  const std::string text(name);
  std::vector<char> buffer(16384);
  group entry{};
  group* found = nullptr;
  const int rc = ::getgrnam_r(text.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (rc == 0 && found != nullptr) return found->gr_gid;
  gid_t gid = 0;
  if (parse_id(name, gid)) return gid;
  return std::unexpected(fmt::format("unknown group \"{}\"{}", text,
                                     rc != 0 ? fmt::format(": {}", std::strerror(rc)) : ""));
}

std::expected<void, std::string> drop_privileges(std::string_view user, std::string_view group) {
  gid_t primary = 0;
  auto uid = lookup_user(user, &primary);
  if (!uid) return std::unexpected(uid.error());
  gid_t gid = primary;
  if (!group.empty()) {
    auto named = lookup_group(group);
    if (!named) return std::unexpected(named.error());
    gid = *named;
  }
  if (::geteuid() != 0) {
    if (::geteuid() == *uid && ::getegid() == gid) return {};
    return std::unexpected(fmt::format(
        "cannot switch to user {} (uid {}, gid {}): not running as root", user, *uid, gid));
  }
  if (::setgroups(1, &gid) != 0 || ::setgid(gid) != 0 || ::setuid(*uid) != 0) {
    return std::unexpected(fmt::format("cannot switch to user {} (uid {}, gid {}): {}", user, *uid,
                                       gid, std::strerror(errno)));
  }
  if (*uid != 0 && ::setuid(0) == 0) {
    return std::unexpected("root privileges could be regained after switching users");
  }
  return {};
}

}  // namespace mtasts::daemon
