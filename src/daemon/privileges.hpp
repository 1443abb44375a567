// Users, groups and giving up root (style §2.15: the daemon runs unprivileged). Names may be
// numeric ids. Errors are one-line reasons.
#pragma once

#include <sys/types.h>

#include <expected>
#include <string>
#include <string_view>

namespace mtasts::daemon {

[[nodiscard]] std::expected<uid_t, std::string> lookup_user(std::string_view name,
                                                            gid_t* primary_group = nullptr);
[[nodiscard]] std::expected<gid_t, std::string> lookup_group(std::string_view name);

// Switches the process to `user` and `group` (default: the user's primary group), dropping
// supplementary groups. Needs root unless the process already runs as them. Afterwards root
// cannot be regained (checked).
[[nodiscard]] std::expected<void, std::string> drop_privileges(std::string_view user,
                                                               std::string_view group);

}  // namespace mtasts::daemon
