// SPDX-License-Identifier: MIT
// Private: raw deflate (RFC 1951, zip method 8) through ISA-L's igzip, both directions.
// Inflate streams into the caller's memory with the CRC-32 summed on the fly; deflate works on
// independent chunks (each ends byte-aligned after a full flush, so their outputs concatenate
// into one ordinary deflate stream, as pigz does) that can be compressed on several cores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zanj::detail {

/// Streaming raw inflate. Compressed input is pulled from `source(dst, max)`, which returns how
/// many bytes it wrote (0 only at the end of the entry's compressed data).
class Inflater {
 public:
  using Source = std::function<std::size_t(char* dst, std::size_t max)>;

  /// `compressed_bytes` bounds what `source` may give; `input_buffer` is the read size.
  Inflater(Source source, std::uint64_t compressed_bytes, std::size_t input_buffer = 256 << 10);
  /// Reads from memory the caller keeps alive: no input copy.
  explicit Inflater(std::string_view compressed);
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  /// Outcome of a read, for the caller to turn into a typed error naming file and entry.
  enum class Status { kOk, kCorrupt, kTruncated };

  /// Inflates exactly `n` bytes into `dst` (fewer only on an error: see status()/error()).
  /// Returns the bytes written.
  std::size_t read(void* dst, std::size_t n);
  /// True once the deflate stream's final block has ended and all its output was read.
  /// Reads ahead to find out (the stream must then have no further output).
  bool at_end();
  /// CRC-32 of everything read so far.
  std::uint32_t crc() const;

  Status status() const { return status_; }
  const std::string& error() const { return error_; }

 private:
  struct State;
  bool refill();
  std::unique_ptr<State> state_;
  Source source_;
  std::uint64_t compressed_left_ = 0;
  std::vector<char> input_;
  Status status_ = Status::kOk;
  std::string error_;
};

/// ISA-L compression levels (0 fastest .. 3 smallest).
inline constexpr int kMinDeflateLevel = 0;
inline constexpr int kMaxDeflateLevel = 3;

/// Compresses the concatenation of `pieces` as one chunk of a raw deflate stream at `level`.
/// A chunk that is not `last` ends with a full flush (byte-aligned, no back-references into the
/// next chunk); the `last` one ends the stream. Appends to `out`.
void deflate_chunk(const std::vector<std::string_view>& pieces, int level, bool last,
                   std::string& out);

}  // namespace zanj::detail
