// SPDX-License-Identifier: MIT
// Raw deflate through ISA-L (see deflate.hpp). ISA-L's igzip inflates about 2.5x and deflates
// (level 1) about 30x faster than zlib on tensor data here; it is already a dependency for CRC-32.
#include "deflate.hpp"

#include <isa-l/igzip_lib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace zanj::detail {
namespace {

// ISA-L counts in 32-bit fields; feed it at most this much at a time.
constexpr std::size_t kMaxStep = std::size_t{1} << 30;

std::string inflate_error_text(int rc) {
  switch (rc) {
    case ISAL_INVALID_BLOCK:
      return "invalid deflate block";
    case ISAL_INVALID_SYMBOL:
      return "invalid deflate symbol";
    case ISAL_INVALID_LOOKBACK:
      return "back-reference before the start of the data";
    case ISAL_NEED_DICT:
      return "deflate stream needs a preset dictionary";
    default:
      return "inflate error " + std::to_string(rc);
  }
}

}  // namespace

struct Inflater::State {
  inflate_state s;
  std::string_view memory;  // input held by the caller (memory mode)
  std::size_t memory_at = 0;
  bool memory_mode = false;
};

Inflater::Inflater(Source source, std::uint64_t compressed_bytes, std::size_t input_buffer)
    : state_(new State), source_(std::move(source)), compressed_left_(compressed_bytes) {
  isal_inflate_init(&state_->s);
  state_->s.crc_flag = ISAL_GZIP_NO_HDR;  // raw deflate, CRC-32 of the output in s.crc
  input_.resize(static_cast<std::size_t>(
      std::max<std::uint64_t>(1, std::min<std::uint64_t>(input_buffer, compressed_bytes))));
}

Inflater::Inflater(std::string_view compressed) : state_(new State) {
  isal_inflate_init(&state_->s);
  state_->s.crc_flag = ISAL_GZIP_NO_HDR;
  state_->memory = compressed;
  state_->memory_mode = true;
  compressed_left_ = compressed.size();
}

Inflater::~Inflater() = default;

std::uint32_t Inflater::crc() const { return state_->s.crc; }

bool Inflater::refill() {
  inflate_state& s = state_->s;
  if (s.avail_in > 0) return true;
  if (compressed_left_ == 0) return false;
  if (state_->memory_mode) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(compressed_left_, kMaxStep));
    s.next_in = reinterpret_cast<std::uint8_t*>(
        const_cast<char*>(state_->memory.data() + state_->memory_at));
    s.avail_in = static_cast<std::uint32_t>(n);
    state_->memory_at += n;
    compressed_left_ -= n;
    return true;
  }
  const std::size_t want =
      static_cast<std::size_t>(std::min<std::uint64_t>(compressed_left_, input_.size()));
  const std::size_t got = source_(input_.data(), want);
  if (got == 0 || got > want) {
    compressed_left_ = 0;  // the source ended early: the caller reports the truncation
    return false;
  }
  compressed_left_ -= got;
  s.next_in = reinterpret_cast<std::uint8_t*>(input_.data());
  s.avail_in = static_cast<std::uint32_t>(got);
  return true;
}

std::size_t Inflater::read(void* dst, std::size_t n) {
  inflate_state& s = state_->s;
  auto* out = static_cast<std::uint8_t*>(dst);
  std::size_t done = 0;
  while (done < n && status_ == Status::kOk) {
    if (s.block_state == ISAL_BLOCK_FINISH) {
      status_ = Status::kCorrupt;
      error_ = "deflate stream ends early";
      break;
    }
    const bool has_input = refill();
    const std::uint32_t in_before = s.avail_in;
    s.next_out = out + done;
    s.avail_out = static_cast<std::uint32_t>(std::min(n - done, kMaxStep));
    const std::uint32_t out_before = s.avail_out;
    const int rc = isal_inflate(&s);
    const std::size_t produced = out_before - s.avail_out;
    done += produced;
    if (rc < 0 || rc == ISAL_NEED_DICT) {
      status_ = Status::kCorrupt;
      error_ = inflate_error_text(rc);
      break;
    }
    if (produced == 0 && s.avail_in == in_before && s.block_state != ISAL_BLOCK_FINISH) {
      if (!has_input) {
        status_ = Status::kTruncated;
        error_ = "compressed data ends inside the deflate stream";
      } else {
        status_ = Status::kCorrupt;
        error_ = "deflate stream makes no progress";
      }
    }
  }
  return done;
}

bool Inflater::at_end() {
  inflate_state& s = state_->s;
  for (;;) {
    if (status_ != Status::kOk) return false;
    if (s.block_state == ISAL_BLOCK_FINISH) return true;
    std::uint8_t probe = 0;
    const bool has_input = refill();
    const std::uint32_t in_before = s.avail_in;
    s.next_out = &probe;
    s.avail_out = 1;
    const int rc = isal_inflate(&s);
    if (rc < 0 || rc == ISAL_NEED_DICT) {
      status_ = Status::kCorrupt;
      error_ = inflate_error_text(rc);
      return false;
    }
    if (s.avail_out == 0) return false;  // more output than the caller expected
    if (s.block_state == ISAL_BLOCK_FINISH) return true;
    if (s.avail_in == in_before) {
      status_ = has_input ? Status::kCorrupt : Status::kTruncated;
      error_ = has_input ? "deflate stream makes no progress"
                         : "compressed data ends inside the deflate stream";
      return false;
    }
  }
}

void deflate_chunk(const std::vector<std::string_view>& pieces, int level, bool last,
                   std::string& out) {
  level = std::clamp(level, kMinDeflateLevel, kMaxDeflateLevel);
  isal_zstream z;
  isal_deflate_init(&z);
  z.level = static_cast<std::uint32_t>(level);
  z.gzip_flag = IGZIP_DEFLATE;
  std::vector<std::uint8_t> level_buf;
  switch (level) {
    case 1:
      level_buf.resize(ISAL_DEF_LVL1_DEFAULT);
      break;
    case 2:
      level_buf.resize(ISAL_DEF_LVL2_DEFAULT);
      break;
    case 3:
      level_buf.resize(ISAL_DEF_LVL3_DEFAULT);
      break;
    default:
      break;
  }
  z.level_buf = level_buf.empty() ? nullptr : level_buf.data();
  z.level_buf_size = static_cast<std::uint32_t>(level_buf.size());

  std::vector<std::string_view> steps;
  for (std::string_view p : pieces) {
    for (std::size_t at = 0; at < p.size(); at += kMaxStep) {
      steps.push_back(p.substr(at, std::min(kMaxStep, p.size() - at)));
    }
  }
  if (steps.empty()) {
    if (!last) return;          // nothing to add to the stream
    steps.emplace_back("", 0);  // an empty final block
  }
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const bool final_step = i + 1 == steps.size();
    z.next_in = reinterpret_cast<std::uint8_t*>(const_cast<char*>(steps[i].data()));
    z.avail_in = static_cast<std::uint32_t>(steps[i].size());
    z.flush = final_step && !last ? FULL_FLUSH : NO_FLUSH;
    z.end_of_stream = final_step && last ? 1 : 0;
    for (;;) {
      // Incompressible data grows by stored-block headers: 5 bytes per 64 KiB, plus slack.
      const std::size_t room = std::max<std::size_t>(64 << 10, z.avail_in + z.avail_in / 64 + 1024);
      const std::size_t old = out.size();
      out.resize(old + room);
      z.next_out = reinterpret_cast<std::uint8_t*>(&out[old]);
      z.avail_out = static_cast<std::uint32_t>(std::min(room, kMaxStep));
      const std::uint32_t before = z.avail_out;
      const int rc = isal_deflate(&z);
      out.resize(old + (before - z.avail_out));
      if (rc != COMP_OK)
        throw std::runtime_error("ISA-L deflate failed (" + std::to_string(rc) + ")");
      if (z.avail_in > 0) continue;
      if (!final_step) break;
      if (last ? z.internal_state.state == ZSTATE_END : z.internal_state.state == ZSTATE_NEW_HDR) {
        break;
      }
    }
  }
}

}  // namespace zanj::detail
