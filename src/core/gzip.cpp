// gzip through zlib: deflate/inflate with windowBits 15 + 16 (the gzip wrapper, RFC 1952).
#include "core/gzip.hpp"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <new>
#include <utility>

#include <fmt/format.h>

namespace mtasts {

namespace {

constexpr int kGzipWindowBits = 15 + 16;  // 32 KiB window, gzip wrapper
constexpr int kMemLevel = 8;              // zlib's default
constexpr int kOsUnix = 3;                // RFC 1952 §2.3.1 OS field
// zlib counts input and output in uInt; feed it at most this much at a time.
constexpr std::size_t kMaxFeed = std::size_t{1} << 30;
constexpr std::size_t kOutputChunk = 64 * 1024;

// Owns a z_stream set up by deflateInit2 or inflateInit2 and ends it once.
class ZStream {
 public:
  enum class Mode { deflate, inflate };
  explicit ZStream(Mode mode) : mode_(mode) {}
  ZStream(const ZStream&) = delete;
  ZStream& operator=(const ZStream&) = delete;
  ~ZStream() {
    if (!started_) return;
    if (mode_ == Mode::deflate) {
      deflateEnd(&stream_);
    } else {
      inflateEnd(&stream_);
    }
  }
  z_stream* get() { return &stream_; }
  void started() { started_ = true; }

 private:
  Mode mode_;
  bool started_ = false;
  z_stream stream_{};
};

// Points the stream at the next piece of `data` from `*position` once it has used the last one.
void feed(z_stream& stream, std::string_view data, std::size_t* position) {
  if (stream.avail_in != 0 || *position == data.size()) return;
  const std::size_t piece = std::min(data.size() - *position, kMaxFeed);
  // zlib's next_in is not const in its API but is only read from.
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + *position));
  stream.avail_in = static_cast<uInt>(piece);
  *position += piece;
}

std::unexpected<Error> failure(ErrorCategory category, std::string reason) {
  return std::unexpected(Error{category, "gzip: " + std::move(reason)});
}

}  // namespace

std::string gzip_compress(std::string_view data) {
  ZStream owner(ZStream::Mode::deflate);
  z_stream& stream = *owner.get();
  if (deflateInit2(&stream, Z_BEST_COMPRESSION, Z_DEFLATED, kGzipWindowBits, kMemLevel,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::bad_alloc();  // the only way it fails with these constant arguments
  }
  owner.started();
  // zlib writes its build's OS code unless told otherwise; fix it so the bytes do not depend on
  // where zlib was built. No name, no comment, mtime 0 (RFC 1952: "no time stamp available").
  gz_header header{};
  header.os = kOsUnix;
  if (deflateSetHeader(&stream, &header) != Z_OK) throw std::bad_alloc();

  std::string out;
  std::size_t position = 0;
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    feed(stream, data, &position);
    const bool last = position == data.size();
    const std::size_t used = out.size();
    out.resize(used + kOutputChunk);
    stream.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    stream.avail_out = static_cast<uInt>(kOutputChunk);
    status = deflate(&stream, last ? Z_FINISH : Z_NO_FLUSH);
    out.resize(used + kOutputChunk - stream.avail_out);
    // Z_BUF_ERROR only says no progress was possible in this call; more room or input follows.
    if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR) {
      throw std::bad_alloc();
    }
  }
  return out;
}

std::expected<std::string, Error> gzip_decompress(std::string_view data, std::size_t max_output,
                                                  ErrorCategory category) {
  if (data.size() < 2 || data[0] != '\x1f' || data[1] != '\x8b') {
    std::string found = data.empty() ? "no bytes" : "";
    for (const char c : data.substr(0, 2)) {
      found += fmt::format("{}{:02x}", found.empty() ? "" : " ", static_cast<unsigned char>(c));
    }
    return failure(category, "not gzip data: expected the magic bytes 1f 8b, found " + found);
  }

  ZStream owner(ZStream::Mode::inflate);
  z_stream& stream = *owner.get();
  if (inflateInit2(&stream, kGzipWindowBits) != Z_OK) throw std::bad_alloc();
  owner.started();

  std::string out;
  std::size_t position = 0;
  for (;;) {  // one gzip member per round
    int status = Z_OK;
    while (status != Z_STREAM_END) {
      feed(stream, data, &position);
      // One byte more than allowed, so that output beyond the cap is seen and refused.
      const std::size_t room = std::min(kOutputChunk, max_output - out.size()) + 1;
      const std::size_t used = out.size();
      out.resize(used + room);
      stream.next_out = reinterpret_cast<Bytef*>(out.data() + used);
      stream.avail_out = static_cast<uInt>(room);
      status = inflate(&stream, Z_NO_FLUSH);
      out.resize(used + room - stream.avail_out);
      if (out.size() > max_output) {
        return failure(category, fmt::format("the data inflates to more than {} bytes, the limit",
                                             max_output));
      }
      if (status == Z_MEM_ERROR) throw std::bad_alloc();
      if (status == Z_DATA_ERROR || status == Z_NEED_DICT || status == Z_STREAM_ERROR) {
        return failure(category,
                       fmt::format("the data is corrupt ({})",
                                   stream.msg != nullptr ? stream.msg : "invalid deflate data"));
      }
      if (status == Z_BUF_ERROR && stream.avail_in == 0 && position == data.size()) {
        return failure(category, "the data ends inside the gzip stream (truncated)");
      }
    }
    const std::size_t left = stream.avail_in + (data.size() - position);
    if (left == 0) return out;
    // RFC 1952 §2.2: a gzip file is a series of members; anything else after one is refused.
    const std::string_view rest = data.substr(data.size() - left);
    if (rest.size() < 2 || rest[0] != '\x1f' || rest[1] != '\x8b') {
      return failure(category,
                     fmt::format("{} bytes after the end of the gzip stream that are not another "
                                 "gzip member",
                                 left));
    }
    if (inflateReset(&stream) != Z_OK) throw std::bad_alloc();
  }
}

}  // namespace mtasts
