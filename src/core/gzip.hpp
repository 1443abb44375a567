// gzip (RFC 1952) for TLSRPT reports: RFC 8460 §5.2 asks for gzip-compressed reports, by mail
// and over HTTPS (RPT-27).
#pragma once

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mtasts {

// One gzip member holding `data`, with a fixed header (no file name, mtime 0, OS byte 3 "Unix"):
// the same input gives the same bytes with the same zlib, so a report built twice is the same
// attachment. Throws std::bad_alloc only when zlib runs out of memory.
[[nodiscard]] std::string gzip_compress(std::string_view data);

// The data of a gzip file (one member or several concatenated, RFC 1952 §2.2). Refuses input
// that is not gzip (including zlib or raw deflate), is truncated or corrupt, has bytes after the
// last member, or would inflate to more than `max_output` bytes (a bomb stops at the cap).
// `category` is what the caller's failure is (where the bytes came from); reasons start with
// "gzip: ".
[[nodiscard]] std::expected<std::string, Error> gzip_decompress(
    std::string_view data, std::size_t max_output, ErrorCategory category = ErrorCategory::store);

}  // namespace mtasts
