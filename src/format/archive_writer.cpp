// SPDX-License-Identifier: MIT
// The zip writer: entries stream from the caller's memory to a temporary file (stored entries
// with their data at 64-byte-aligned offsets, CRC-32 summed slice by slice as they go;
// deflated entries through ISA-L in chunks on several cores), and commit() makes the file
// appear atomically.
#include <cerrno>
#include <cstring>
#include <ctime>
#include <unordered_set>

#include "../parallel.hpp"
#include "../storage/storage.hpp"
#include "configured_model/archive.hpp"
#include "configured_model/checksum.hpp"
#include "configured_model/errors.hpp"
#include "deflate.hpp"
#include "zip_format.hpp"

namespace zanj {
using namespace zipfmt;  // NOLINT(google-build-using-namespace): record constants only

namespace {

constexpr std::size_t kSliceBytes = kCrcSliceBytes;
// Deflated entries are compressed in independent chunks of this size (a full flush between
// them costs ~5 bytes and the 32 KiB of history each chunk starts without: <0.1% of size here),
// into output buffers that are reused, at most two per compressing thread.
constexpr std::uint64_t kChunkBytes = 2 << 20;
constexpr std::size_t kBuffersPerThread = 2;
constexpr std::uint16_t kFlagUtf8 = 0x0800;
constexpr std::uint16_t kMadeByUnix = 3 << 8;
constexpr std::uint32_t kRegularFile0644 = 0100644u << 16;

// MS-DOS date and time of now, local time, as zip stores modification times.
std::pair<std::uint16_t, std::uint16_t> dos_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  if (tm.tm_year < 80) return {0, (1 << 5) | 1};  // 1980-01-01 00:00
  const auto time =
      static_cast<std::uint16_t>((tm.tm_hour << 11) | (tm.tm_min << 5) | (tm.tm_sec / 2));
  const auto date =
      static_cast<std::uint16_t>(((tm.tm_year - 80) << 9) | ((tm.tm_mon + 1) << 5) | tm.tm_mday);
  return {time, date};
}

}  // namespace

struct ArchiveWriter::Impl {
  struct Central {
    std::string name;
    std::uint64_t local_offset = 0, compressed = 0, size = 0;
    std::uint32_t crc = 0;
    std::uint16_t method = 0;
  };

  std::string path;                            // final path, for messages
  std::unique_ptr<detail::WritableFile> file;  // where the bytes go (see storage.hpp)
  std::uint64_t offset = 0;
  bool force_zip64 = false;
  int level = kDefaultDeflateLevel;
  std::size_t threads = 0;
  bool committed = false;
  std::uint16_t dos_time = 0, dos_date = 0;
  std::vector<Central> central;
  std::unordered_set<std::string> names;
  std::vector<std::string> chunk_out;    // deflated chunks waiting to be written, reused
  std::vector<std::uint32_t> chunk_crc;  // and the CRC-32 of each one's input

  void write_all(const std::string& /*entry*/, const char* p, std::size_t n) {
    file->append(p, n);
    offset += n;
  }

  void pwrite_all(const std::string& /*entry*/, const std::string& bytes, std::uint64_t at) {
    file->patch(at, bytes);
  }

  // Writes the pieces as they are; returns their CRC-32.
  std::uint32_t write_stored(const std::string& entry,
                             std::initializer_list<std::string_view> pieces) {
    std::uint32_t crc = 0;
    for (std::string_view piece : pieces) {
      for (std::size_t at = 0; at < piece.size(); at += kSliceBytes) {
        const std::size_t n = std::min(kSliceBytes, piece.size() - at);
        crc = crc32(crc, piece.data() + at, n);  // then written while still in the cache
        write_all(entry, piece.data() + at, n);
      }
    }
    return crc;
  }

  // Deflates the pieces (raw deflate through ISA-L) in independent chunks compressed on several
  // threads and written in order; returns {crc, compressed bytes}.
  std::pair<std::uint32_t, std::uint64_t> write_deflated(
      const std::string& entry, std::initializer_list<std::string_view> pieces) {
    std::uint64_t total = 0;
    for (auto p : pieces) total += p.size();
    const std::uint64_t chunks =
        std::max<std::uint64_t>(1, (total + kChunkBytes - 1) / kChunkBytes);
    // The input of chunk c: the pieces' bytes [c * kChunkBytes, (c + 1) * kChunkBytes).
    auto chunk_input = [&](std::uint64_t c) {
      std::vector<std::string_view> in;
      std::uint64_t begin = c * kChunkBytes, end = std::min(total, begin + kChunkBytes);
      std::uint64_t at = 0;
      for (std::string_view p : pieces) {
        const std::uint64_t p_end = at + p.size();
        if (p_end > begin && at < end) {
          const std::uint64_t from = std::max(begin, at), to = std::min(end, p_end);
          in.push_back(
              p.substr(static_cast<std::size_t>(from - at), static_cast<std::size_t>(to - from)));
        }
        at = p_end;
      }
      return in;
    };
    const std::size_t workers = detail::worker_count(threads, static_cast<std::size_t>(chunks));
    const std::size_t buffers = workers * kBuffersPerThread;
    if (chunk_out.size() < buffers) chunk_out.resize(buffers);
    if (chunk_crc.size() < buffers) chunk_crc.resize(buffers);
    std::uint32_t crc = 0;
    std::uint64_t written = 0;
    detail::run_in_order(
        static_cast<std::size_t>(chunks), workers,
        [&](std::size_t i) {
          std::string& out = chunk_out[i % buffers];
          out.clear();  // keeps its capacity: no new pages to fault in per chunk
          const std::vector<std::string_view> in = chunk_input(i);
          try {
            detail::deflate_chunk(in, level, i + 1 == chunks, out);
          } catch (const std::exception& e) {
            detail::throw_io_error(path, entry, e.what());
          }
          std::uint32_t c = 0;
          for (std::string_view p : in) c = crc32(c, p.data(), p.size());
          chunk_crc[i % buffers] = c;
        },
        [&](std::size_t i) {
          const std::uint64_t begin = i * kChunkBytes;
          crc = crc32_combine(crc, chunk_crc[i % buffers],
                              std::min(total, begin + kChunkBytes) - begin);
          const std::string& out = chunk_out[i % buffers];
          write_all(entry, out.data(), out.size());
          written += out.size();
        },
        buffers);
    return {crc, written};
  }
};

ArchiveWriter::ArchiveWriter(std::string path, const ArchiveWriterOptions& options)
    : ArchiveWriter(std::move(path), nullptr, options) {}

ArchiveWriter::ArchiveWriter(std::string* destination, const ArchiveWriterOptions& options)
    : ArchiveWriter("<memory>", destination, options) {
  if (!destination) throw UsageError("ArchiveWriter: the destination string is null");
}

ArchiveWriter::ArchiveWriter(std::string path, std::string* memory,
                             const ArchiveWriterOptions& options)
    : path_(std::move(path)), memory_(memory), impl_(new Impl) {
  impl_->path = path_;
  impl_->force_zip64 = options.force_zip64;
  if (options.deflate_level < detail::kMinDeflateLevel ||
      options.deflate_level > detail::kMaxDeflateLevel) {
    throw UsageError(detail::message(path_, "",
                                     "deflate_level must be 0..3 (ISA-L's levels), not " +
                                         std::to_string(options.deflate_level)));
  }
  impl_->level = options.deflate_level;
  impl_->threads = options.threads;
  std::tie(impl_->dos_time, impl_->dos_date) = dos_now();
  // In memory, to a local file (locked temporary, fsync, rename) or to an object store
  // (multipart upload): the same bytes, visible only once commit() returns.
  impl_->file = memory_ ? detail::memory_writer(memory_) : detail::storage_for(path_).create(path_);
}

ArchiveWriter::~ArchiveWriter() = default;

void ArchiveWriter::add(const std::string& name, std::initializer_list<std::string_view> pieces,
                        Compression compression) {
  Impl& w = *impl_;
  if (w.committed) detail::throw_io_error(path_, name, "entry added after commit()");
  if (name.empty() || name.size() > kMax16) {
    detail::throw_format_error(path_, name, "entry names must have 1 to 65535 bytes");
  }
  if (!w.names.insert(name).second) {
    detail::throw_format_error(path_, name, "entry added twice");
  }
  std::uint64_t size = 0;
  for (auto p : pieces) size += p.size();
  const bool stored = compression == Compression::kStored;
  const std::uint64_t bound = stored ? size : size + size / 1000 + (1 << 16);  // deflate growth
  const bool zip64 = w.force_zip64 || bound >= kMax32;

  Impl::Central c;
  c.name = name;
  c.local_offset = w.offset;
  c.size = size;
  c.method = stored ? 0 : 8;

  const std::size_t zip64_bytes = zip64 ? 20 : 0;
  std::size_t padding = 0;
  if (stored) {
    const std::uint64_t data_at = w.offset + kLocalHeaderBytes + name.size() + zip64_bytes + 4;
    padding = (kArchiveAlignment - data_at % kArchiveAlignment) % kArchiveAlignment;
  }
  const std::size_t extra_bytes = zip64_bytes + (stored ? 4 + padding : 0);
  RecordBuilder h;
  h.u32(kLocalSig)
      .u16(zip64 ? 45 : 20)
      .u16(kFlagUtf8)
      .u16(c.method)
      .u16(w.dos_time)
      .u16(w.dos_date)
      .u32(0)  // CRC-32, patched below
      .u32(zip64 ? kMax32 : size)
      .u32(zip64 ? kMax32 : size)
      .u16(name.size())
      .u16(extra_bytes)
      .bytes(name);
  if (zip64) h.u16(kZip64ExtraId).u16(16).u64(size).u64(stored ? size : 0);
  if (stored) h.u16(kPaddingExtraId).u16(padding).zeros(padding);
  w.file->hold(c.local_offset);  // patched below
  w.write_all(name, h.str().data(), h.str().size());

  if (stored) {
    c.crc = w.write_stored(name, pieces);
    c.compressed = size;
  } else {
    std::tie(c.crc, c.compressed) = w.write_deflated(name, pieces);
    if (!zip64 && c.compressed >= kMax32) {
      detail::throw_io_error(path_, name, "deflated data outgrew the 4 GiB zip32 limit");
    }
  }
  // Patch the CRC (and a deflated entry's compressed size) into the local header.
  RecordBuilder crc;
  crc.u32(c.crc);
  if (!stored && !zip64) crc.u32(c.compressed);
  w.pwrite_all(name, crc.str(), c.local_offset + 14);
  if (!stored && zip64) {
    RecordBuilder z;
    z.u64(c.compressed);
    w.pwrite_all(name, z.str(), c.local_offset + kLocalHeaderBytes + name.size() + 4 + 8);
  }
  w.file->release();
  w.central.push_back(std::move(c));
}

std::uint64_t ArchiveWriter::bytes_written() const { return impl_->offset; }

void ArchiveWriter::commit() {
  Impl& w = *impl_;
  if (w.committed) return;
  const std::uint64_t cd_offset = w.offset;
  RecordBuilder cd;
  for (const auto& c : w.central) {
    const bool big_size = w.force_zip64 || c.size >= kMax32 || c.compressed >= kMax32;
    const bool big_offset = w.force_zip64 || c.local_offset >= kMax32;
    RecordBuilder z;
    if (big_size) z.u64(c.size).u64(c.compressed);
    if (big_offset) z.u64(c.local_offset);
    const bool zip64 = !z.str().empty();
    cd.u32(kCentralSig)
        .u16(kMadeByUnix | (zip64 ? 45 : 20))
        .u16(zip64 ? 45 : 20)
        .u16(kFlagUtf8)
        .u16(c.method)
        .u16(w.dos_time)
        .u16(w.dos_date)
        .u32(c.crc)
        .u32(big_size ? kMax32 : c.compressed)
        .u32(big_size ? kMax32 : c.size)
        .u16(c.name.size())
        .u16(zip64 ? 4 + z.str().size() : 0)
        .u16(0)  // comment
        .u16(0)  // disk
        .u16(0)  // internal attributes
        .u32(kRegularFile0644)
        .u32(big_offset ? kMax32 : c.local_offset)
        .bytes(c.name);
    if (zip64) cd.u16(kZip64ExtraId).u16(z.str().size()).bytes(z.str());
  }
  const std::uint64_t cd_size = cd.str().size();
  const std::uint64_t count = w.central.size();
  const bool zip64 = w.force_zip64 || count >= kMax16 || cd_size >= kMax32 || cd_offset >= kMax32;
  if (zip64) {
    const std::uint64_t end64_offset = cd_offset + cd_size;
    cd.u32(kEnd64Sig)
        .u64(kEnd64Bytes - 12)
        .u16(kMadeByUnix | 45)
        .u16(45)
        .u32(0)
        .u32(0)
        .u64(count)
        .u64(count)
        .u64(cd_size)
        .u64(cd_offset);
    cd.u32(kEnd64LocatorSig).u32(0).u64(end64_offset).u32(1);
  }
  cd.u32(kEndSig)
      .u16(0)
      .u16(0)
      .u16(zip64 ? kMax16 : count)
      .u16(zip64 ? kMax16 : count)
      .u32(zip64 ? kMax32 : cd_size)
      .u32(zip64 ? kMax32 : cd_offset)
      .u16(0);
  w.write_all("", cd.str().data(), cd.str().size());
  w.file->commit();
  w.committed = true;
}

}  // namespace zanj
