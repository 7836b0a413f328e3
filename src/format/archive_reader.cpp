// SPDX-License-Identifier: MIT
// The zip reader. The central directory is parsed here (libzip's open costs ~1 us per entry,
// 10 ms for a 10,000-tensor checkpoint, and keeps local-header offsets to itself); libzip
// reads the archive as a second opinion when ArchiveLimits::check_consistency asks (verify()).
// Entry data is read by us: stored entries read (or mapped) straight from the file, deflated
// ones inflated by ISA-L straight into the caller's memory, the CRC-32 summed on the way.
#include <sys/mman.h>
#include <zip.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "../parallel.hpp"
#include "../storage/storage.hpp"
#include "configured_model/archive.hpp"
#include "configured_model/checksum.hpp"
#include "configured_model/errors.hpp"
#include "deflate.hpp"
#include "zip_format.hpp"

namespace zanj {
namespace {

std::string zip_error_text(int code) {
  zip_error_t err;
  zip_error_init_with_code(&err, code);
  std::string s = zip_error_strerror(&err);
  zip_error_fini(&err);
  return s;
}

std::string errno_text(int err) { return std::strerror(err); }

// The end-of-central-directory record alone is 22 bytes; libzip accepts an empty file as an
// empty archive, which would hide truncation to zero bytes.
constexpr std::size_t kMinZipBytes = 22;
constexpr const char* kTooShort = "not a zip archive (shorter than the 22-byte end record)";

// Remote files (object stores) are read in few, large requests. Locating an entry fetches its
// local header with the start of its data (kRemoteHeadBytes: a .npy header's first read)
// in one request; its data is then read in parts of kRemotePartBytes, kRemoteStreams at once,
// straight into the caller's memory. prefetch() fetches an entry of up to
// kRemoteWholeEntryBytes whole, header and all, in one request (a lazy read of one tensor).
constexpr std::uint64_t kRemoteWholeEntryBytes = 64 << 20;
constexpr std::size_t kRemotePartBytes = 8 << 20;
constexpr std::size_t kRemoteStreams = 8;
// A local header is 30 bytes, the name, and extras (ours: at most 87 bytes; a larger one costs
// a second request); a .npy header's first read is 4 KiB. An entry of up to kRemoteSmallBytes
// comes whole with its header.
constexpr std::uint64_t kRemoteHeadBytes = 30 + 1024 + 4096;  // plus the name
constexpr std::uint64_t kRemoteSmallBytes = 256 << 10;

[[noreturn]] void throw_open_error(const std::string& name, int code, const std::string& why) {
  if (code == ZIP_ER_EXISTS) {
    detail::throw_format_error(name, "", "duplicate entry name in the zip (" + why + ")");
  }
  detail::throw_format_error(name, "", "not a valid zip archive: " + why);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ArchiveReader

struct ArchiveReader::Impl {
  std::string name;
  std::uint64_t file_bytes = 0;                    // size of the whole archive, bounds every size
  std::unique_ptr<detail::RandomAccessFile> file;  // where the bytes are read from
  std::shared_ptr<std::string> memory;             // the bytes, for from_bytes()
  std::uint64_t directory_offset = 0;              // where the central directory starts
  std::vector<std::uint64_t> span_ends;            // end of each entry's bytes (next header or dir)
  zip_t* za = nullptr;
  ArchiveLimits limits;
  std::vector<EntryInfo> entries;
  std::unordered_map<std::string_view, std::size_t> index;
  std::vector<std::uint64_t> local_offsets;  // local header of each entry, central-dir order
  // What a local header must repeat of its central record (as libzip's consistency check
  // compares them, so that reading and verify() accept the same files).
  struct CentralFields {
    std::uint32_t version_needed = 0, method = 0, modified = 0, crc = 0, compressed = 0, size = 0;
  };
  std::vector<CentralFields> central;
  mutable std::vector<std::uint64_t> data_offsets;  // 0 until located
  mutable std::vector<char> entry_used;             // opened or mapped by a read
  mutable ArchiveMapping map;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (za) zip_discard(za);
  }

  bool remote() const { return file->remote(); }

  [[noreturn]] void fail(std::string_view entry, const std::string& what) const {
    detail::throw_format_error(name, entry, what);
  }

  // Exactly `n` bytes at `offset` of the archive, or a FormatError for truncation.
  void pread_exact(std::uint64_t offset, void* dst, std::size_t n, std::string_view entry) const {
    if (offset > file_bytes || n > file_bytes - offset) {
      fail(entry, "needs bytes " + std::to_string(offset) + ".." + std::to_string(offset + n) +
                      " past the archive's end (" + std::to_string(file_bytes) + " bytes)");
    }
    try {
      file->read_at(offset, dst, n);
    } catch (const FormatError&) {
      fail(entry, "archive truncated while reading (it shrank after opening?)");
    }
  }

  std::string pread_string(std::uint64_t offset, std::size_t n, std::string_view entry) const {
    std::string out(n, '\0');
    pread_exact(offset, out.data(), n, entry);
    return out;
  }

  // Parses the central directory (APPNOTE 4.3.12-4.3.16) into `entries` and each entry's
  // local-header offset. Everything is bounds-checked against the file before it is read.
  void load_directory() {
    using namespace zipfmt;  // NOLINT(google-build-using-namespace)
    const std::size_t tail_bytes =
        static_cast<std::size_t>(std::min<std::uint64_t>(file_bytes, kEndBytes + kMax16));
    const std::uint64_t tail_at = file_bytes - tail_bytes;
    const std::string tail = pread_string(tail_at, tail_bytes, "");
    std::size_t end = std::string::npos;
    for (std::size_t pos = tail.size() - kEndBytes + 1; pos-- > 0;) {
      if (get_le(&tail[pos], 4) == kEndSig &&
          get_le(&tail[pos + 20], 2) <= tail.size() - pos - kEndBytes) {
        end = pos;
        break;
      }
    }
    if (end == std::string::npos) {
      // A zip's first local header with no end record: the file was cut short.
      if (file_bytes >= 4 && get_le(pread_string(0, 4, "").data(), 4) == kLocalSig) {
        fail("",
             "truncated: it starts as a zip archive but its end of central directory "
             "record is missing (cut short while being written or copied?)");
      }
      fail("", "not a valid zip archive: end of central directory record not found");
    }
    if (get_le(&tail[end + 4], 2) != 0 || get_le(&tail[end + 6], 2) != 0 ||
        get_le(&tail[end + 8], 2) != get_le(&tail[end + 10], 2)) {
      fail("", "not a valid zip archive: split over several disks");
    }
    std::uint64_t count = get_le(&tail[end + 10], 2);
    std::uint64_t cd_size = get_le(&tail[end + 12], 4);
    std::uint64_t cd_offset = get_le(&tail[end + 16], 4);
    std::uint64_t cd_end = tail_at + end;
    const bool maybe64 = count == kMax16 || cd_size == kMax32 || cd_offset == kMax32;
    bool have64 = false;
    // A zip64 locator may precede the end record even when no field overflows (PyTorch's
    // writer always adds one); then the zip64 record is authoritative and must agree.
    if (tail_at + end >= kEnd64LocatorBytes) {
      const std::string loc =
          pread_string(tail_at + end - kEnd64LocatorBytes, kEnd64LocatorBytes, "");
      have64 = get_le(loc.data(), 4) == kEnd64LocatorSig;
      if (have64) {
        // The locator's disk numbers (the record's disk, the count of disks) and the record's
        // own (this disk, the directory's disk, entries here vs in all) say "one disk".
        if (get_le(&loc[4], 4) != 0 || get_le(&loc[16], 4) > 1) {
          fail("", "not a valid zip archive: zip64 locator says split over several disks");
        }
        const std::uint64_t end64 = get_le(&loc[8], 8);
        if (end64 > tail_at + end - kEnd64LocatorBytes) {
          fail("", "zip64 end record offset " + std::to_string(end64) + " is past its locator");
        }
        const std::string rec = pread_string(end64, kEnd64Bytes, "");
        if (get_le(rec.data(), 4) != kEnd64Sig) fail("", "zip64 end record missing");
        if (get_le(&rec[16], 4) != 0 || get_le(&rec[20], 4) != 0 ||
            get_le(&rec[24], 8) != get_le(&rec[32], 8)) {
          fail("", "not a valid zip archive: zip64 end record says split over several disks");
        }
        const std::uint64_t count64 = get_le(&rec[32], 8);
        const std::uint64_t size64 = get_le(&rec[40], 8);
        const std::uint64_t offset64 = get_le(&rec[48], 8);
        if ((count != kMax16 && count != count64) || (cd_size != kMax32 && cd_size != size64) ||
            (cd_offset != kMax32 && cd_offset != offset64)) {
          fail("", "zip64 end record disagrees with the end of central directory record");
        }
        count = count64;
        cd_size = size64;
        cd_offset = offset64;
        cd_end = end64;
      }
    }
    // 65535 entries fit a zip32 record exactly; larger fields need the zip64 one.
    if (maybe64 && !have64 && (cd_size == kMax32 || cd_offset == kMax32)) {
      fail("", "zip64 end locator missing");
    }
    if (count > limits.max_entries) {
      fail("", "too many entries (limit " + std::to_string(limits.max_entries) + ", found " +
                   std::to_string(count) + ")");
    }
    if (cd_offset > cd_end || cd_end - cd_offset != cd_size) {
      fail("", "central directory bounds disagree with its records (prepended data?)");
    }
    // Each record takes at least 46 bytes: a count the directory cannot hold is a lie.
    if (count > cd_size / kCentralHeaderBytes) {
      fail("", "central directory of " + std::to_string(cd_size) + " bytes cannot hold " +
                   std::to_string(count) + " entries");
    }
    const std::string cd = pread_string(cd_offset, static_cast<std::size_t>(cd_size), "");
    std::size_t pos = 0;
    entries.reserve(static_cast<std::size_t>(count));
    local_offsets.reserve(static_cast<std::size_t>(count));
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::string where = "entry #" + std::to_string(i);
      if (cd.size() - pos < kCentralHeaderBytes || get_le(&cd[pos], 4) != kCentralSig) {
        fail(where, "central directory record not found where expected");
      }
      const char* r = &cd[pos];
      const std::size_t n = get_le(r + 28, 2), m = get_le(r + 30, 2), k = get_le(r + 32, 2);
      if (cd.size() - pos - kCentralHeaderBytes < n + m + k) {
        fail(where, "central directory record truncated");
      }
      EntryInfo e;
      e.name.assign(r + kCentralHeaderBytes, n);
      central.push_back({static_cast<std::uint32_t>(get_le(r + 6, 2)),
                         static_cast<std::uint32_t>(get_le(r + 10, 2)),
                         static_cast<std::uint32_t>(get_le(r + 12, 4)),
                         static_cast<std::uint32_t>(get_le(r + 16, 4)),
                         static_cast<std::uint32_t>(get_le(r + 20, 4)),
                         static_cast<std::uint32_t>(get_le(r + 24, 4))});
      e.method = static_cast<std::uint16_t>(get_le(r + 10, 2));
      e.crc = static_cast<std::uint32_t>(get_le(r + 16, 4));
      e.compressed_size = get_le(r + 20, 4);
      e.size = get_le(r + 24, 4);
      std::uint64_t offset = get_le(r + 42, 4);
      std::uint64_t disk = get_le(r + 34, 2);
      if (get_le(r + 8, 2) & 1) fail(e.name, "encrypted entries are not supported");
      if (e.size == kMax32 || e.compressed_size == kMax32 || offset == kMax32 || disk == kMax16) {
        // The zip64 extra holds the 64-bit fields whose 32-bit slots are all ones, in order.
        const char* x = r + kCentralHeaderBytes + n;
        bool found = false;
        for (std::size_t at = 0; at + 4 <= m && !found;) {
          const std::size_t len = get_le(x + at + 2, 2);
          if (at + 4 + len > m) break;
          if (get_le(x + at, 2) == kZip64ExtraId) {
            const char* f = x + at + 4;
            std::size_t used = 0;
            auto take = [&](std::uint64_t& v, std::size_t bytes) {
              if (used + bytes > len) fail(e.name, "zip64 extra field too short");
              v = get_le(f + used, static_cast<int>(bytes));
              used += bytes;
            };
            if (e.size == kMax32) take(e.size, 8);
            if (e.compressed_size == kMax32) take(e.compressed_size, 8);
            if (offset == kMax32) take(offset, 8);
            if (disk == kMax16) take(disk, 4);
            found = true;
          }
          at += 4 + len;
        }
        if (!found) fail(e.name, "zip64 extra field missing");
      }
      if (disk != 0) fail(e.name, "entry on another disk of a split archive");
      if (offset >= file_bytes) {
        fail(e.name,
             "local header offset " + std::to_string(offset) + " is past the archive's end");
      }
      local_offsets.push_back(offset);
      e.local_offset = offset;
      entries.push_back(std::move(e));
      pos += kCentralHeaderBytes + n + m + k;
    }
    index.reserve(entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (!index.emplace(entries[i].name, i).second) {
        fail(entries[i].name, "duplicate entry name in the zip");
      }
    }
    data_offsets.assign(entries.size(), 0);
    entry_used.assign(entries.size(), 0);
    directory_offset = cd_offset;
    std::vector<std::size_t> order(entries.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return local_offsets[a] < local_offsets[b]; });
    span_ends.assign(entries.size(), cd_offset);
    for (std::size_t k = 0; k + 1 < order.size(); ++k) {
      span_ends[order[k]] = std::max(local_offsets[order[k]], local_offsets[order[k + 1]]);
    }
    if (remote()) {
      // The leading JSON entries (a ZANJ file's __zanj_meta__.json and __zanj__.json) come
      // with one request: opening a remote file costs the tail and this.
      std::uint64_t head_end = 0;
      for (std::size_t i : order) {
        const std::string& n = entries[i].name;
        if (local_offsets[i] != head_end && head_end != 0) break;
        if (n.size() < 5 || n.compare(n.size() - 5, 5, ".json") != 0) break;
        if (span_ends[i] - local_offsets[i] > kRemoteWholeEntryBytes) break;
        head_end = span_ends[i];
      }
      if (head_end > 0) file->prefetch(0, head_end);
    }
  }

  // A remote entry's local header and the start of its data, or (`whole`, when it is not
  // too large) all of it, in one request.
  void prefetch_entry(std::size_t i, bool whole) const {
    if (!remote()) return;
    file->prefetch(local_offsets[i], prefetch_bytes(i, whole));
  }

  std::uint64_t prefetch_bytes(std::size_t i, bool whole) const {
    const std::uint64_t at = local_offsets[i];
    const std::uint64_t span = span_ends[i] > at ? span_ends[i] - at : 0;
    return (whole && span <= kRemoteWholeEntryBytes) || span <= kRemoteSmallBytes
               ? span
               : std::min(span, kRemoteHeadBytes + entries[i].name.size());
  }

  // With ArchiveLimits::check_consistency, libzip reads the archive too (comparing every local
  // header with the central directory) and must see the same entries.
  void cross_check(zip_t* zip) const {
    const zip_int64_t n = zip_get_num_entries(zip, 0);
    if (n < 0 || static_cast<std::uint64_t>(n) != entries.size()) {
      fail("", "libzip counts " + std::to_string(n) + " entries, the central directory " +
                   std::to_string(entries.size()));
    }
    for (zip_int64_t i = 0; i < n; ++i) {
      zip_stat_t st;
      zip_stat_init(&st);
      const EntryInfo& e = entries[static_cast<std::size_t>(i)];
      if (zip_stat_index(zip, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW, &st) != 0 ||
          !(st.valid & ZIP_STAT_NAME) || e.name != st.name || e.size != st.size ||
          e.compressed_size != st.comp_size || e.crc != st.crc) {
        fail(e.name, "libzip reads this central directory record differently");
      }
    }
  }

  std::uint64_t locate(std::size_t i) const {
    using namespace zipfmt;  // NOLINT(google-build-using-namespace)
    if (data_offsets[i]) return data_offsets[i];
    prefetch_entry(i, false);
    const EntryInfo& e = entries[i];
    const std::uint64_t at = local_offsets[i];
    const std::string h = pread_string(at, kLocalHeaderBytes, e.name);
    if (get_le(h.data(), 4) != kLocalSig) fail(e.name, "local header not found");
    if (get_le(&h[6], 2) & 1) fail(e.name, "encrypted entries are not supported");
    const std::uint64_t n = get_le(&h[26], 2), m = get_le(&h[28], 2);
    if (pread_string(at + kLocalHeaderBytes, n, e.name) != e.name) {
      fail(e.name, "local header names another entry");
    }
    const CentralFields& c = central[i];
    const auto disagree = [&](const char* field, std::uint64_t local, std::uint64_t expected) {
      fail(e.name, std::string("local header disagrees with the central directory on the ") +
                       field + " (" + std::to_string(local) + " vs " + std::to_string(expected) +
                       ")");
    };
    if (get_le(&h[4], 2) > c.version_needed) {
      disagree("version needed", get_le(&h[4], 2), c.version_needed);
    }
    if (get_le(&h[8], 2) != c.method) disagree("method", get_le(&h[8], 2), c.method);
    if (get_le(&h[10], 4) != c.modified) disagree("time", get_le(&h[10], 4), c.modified);
    const bool descriptor = get_le(&h[6], 2) & 8;  // crc and sizes follow the data instead
    const auto same = [&](const char* field, std::uint64_t local, std::uint32_t expected) {
      if (local == expected || (descriptor && local == 0)) return;
      if (local == kMax32 || expected == kMax32) return;  // zip64: the 64-bit values are elsewhere
      disagree(field, local, expected);
    };
    const std::uint64_t crc = get_le(&h[14], 4);
    if (crc != c.crc && !(descriptor && crc == 0)) disagree("CRC-32", crc, c.crc);
    same("compressed size", get_le(&h[18], 4), c.compressed);
    same("size", get_le(&h[22], 4), c.size);
    const std::uint64_t data = at + kLocalHeaderBytes + n + m;
    if (data > file_bytes || e.compressed_size > file_bytes - data) {
      fail(e.name, "entry data (" + std::to_string(e.compressed_size) + " bytes at offset " +
                       std::to_string(data) + ") runs past the archive's end (" +
                       std::to_string(file_bytes) + " bytes)");
    }
    data_offsets[i] = data;
    return data;
  }

  // Declared sizes are checked against the file and the limits before anything is allocated.
  const EntryInfo& checked(std::string_view entry_name) const {
    auto it = index.find(entry_name);
    if (it == index.end()) fail(entry_name, "no such entry in the archive");
    const EntryInfo& e = entries[it->second];
    if (e.compressed_size > file_bytes) {
      fail(entry_name, "declared compressed size " + std::to_string(e.compressed_size) +
                           " exceeds the archive size " + std::to_string(file_bytes));
    }
    if (e.method == ZIP_CM_STORE && e.size != e.compressed_size) {
      fail(entry_name, "stored entry with size " + std::to_string(e.size) + " != compressed size " +
                           std::to_string(e.compressed_size));
    }
    if (e.method != ZIP_CM_STORE && e.compressed_size == 0 && e.size > 0) {
      fail(entry_name, "deflated entry with no compressed data");
    }
    if (e.size > limits.max_entry_bytes) {
      fail(entry_name, "entry of " + std::to_string(e.size) + " bytes exceeds the limit of " +
                           std::to_string(limits.max_entry_bytes));
    }
    if (e.method != ZIP_CM_STORE && e.compressed_size > 0 &&
        e.size / e.compressed_size > limits.max_compression_ratio) {
      fail(entry_name, "compression ratio " + std::to_string(e.size / e.compressed_size) +
                           ":1 exceeds the limit of " +
                           std::to_string(limits.max_compression_ratio) + ":1");
    }
    if (e.method != ZIP_CM_STORE && e.method != ZIP_CM_DEFLATE) {
      fail(entry_name, "unsupported compression method " + std::to_string(e.method) +
                           " (expected 0 stored or 8 deflate)");
    }
    return e;
  }

  std::size_t position(const EntryInfo& e) const { return index.at(e.name); }
};

ArchiveReader::ArchiveReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ArchiveReader::ArchiveReader(ArchiveReader&&) noexcept = default;
ArchiveReader& ArchiveReader::operator=(ArchiveReader&&) noexcept = default;
ArchiveReader::~ArchiveReader() = default;

ArchiveReader ArchiveReader::open(const std::string& path, const ArchiveLimits& limits) {
  auto file = detail::storage_for(path).open(path);
  if (file->remote() && limits.check_consistency) {
    // libzip's second opinion reads the whole archive: fetched once, in parallel ranges.
    std::string bytes(static_cast<std::size_t>(file->size()), '\0');
    const std::size_t parts = (bytes.size() + kRemotePartBytes - 1) / kRemotePartBytes;
    detail::run_in_order(
        parts, std::min(parts, kRemoteStreams),
        [&](std::size_t i) {
          const std::size_t at = i * kRemotePartBytes;
          file->read_at(at, &bytes[at], std::min(kRemotePartBytes, bytes.size() - at));
        },
        [](std::size_t) {});
    return from_bytes(std::move(bytes), path, limits);
  }
  auto impl = std::make_unique<Impl>();
  impl->name = path;
  impl->limits = limits;
  impl->file = std::move(file);
  impl->file_bytes = impl->file->size();
  if (impl->file_bytes < kMinZipBytes) {
    detail::throw_format_error(path, "", kTooShort);
  }
  impl->load_directory();
  if (limits.check_consistency) {
    int code = 0;
    zip_t* zip = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
    if (!zip) {
      if (code == ZIP_ER_OPEN || code == ZIP_ER_READ) {
        detail::throw_io_error(path, "", "cannot open: " + zip_error_text(code));
      }
      throw_open_error(path, code, zip_error_text(code));
    }
    impl->za = zip;
    impl->cross_check(zip);
  }
  return ArchiveReader(std::move(impl));
}

ArchiveReader ArchiveReader::from_bytes(std::string bytes, std::string display_name,
                                        const ArchiveLimits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->name = std::move(display_name);
  impl->limits = limits;
  impl->memory = std::make_shared<std::string>(std::move(bytes));
  impl->file = detail::memory_file(impl->memory);
  impl->file_bytes = impl->memory->size();
  if (impl->memory->size() < kMinZipBytes) detail::throw_format_error(impl->name, "", kTooShort);
  impl->load_directory();
  if (limits.check_consistency) {
    zip_error_t err;
    zip_error_init(&err);
    zip_source_t* src =
        zip_source_buffer_create(impl->memory->data(), impl->memory->size(), 0, &err);
    if (!src) {
      const std::string why = zip_error_strerror(&err);
      zip_error_fini(&err);
      detail::throw_io_error(impl->name, "", "cannot open: " + why);
    }
    impl->za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (!impl->za) {
      const std::string why = zip_error_strerror(&err);
      const int code = zip_error_code_zip(&err);
      zip_error_fini(&err);
      zip_source_free(src);
      throw_open_error(impl->name, code, why);
    }
    zip_error_fini(&err);
    impl->cross_check(impl->za);
  }
  return ArchiveReader(std::move(impl));
}

const std::vector<EntryInfo>& ArchiveReader::entries() const { return impl_->entries; }

const std::string& ArchiveReader::name() const { return impl_->name; }

const EntryInfo* ArchiveReader::find(std::string_view name) const {
  auto it = impl_->index.find(name);
  return it == impl_->index.end() ? nullptr : &impl_->entries[it->second];
}

// ---------------------------------------------------------------------------------------------
// EntryReader

struct EntryReader::Impl {
  const ArchiveReader::Impl* archive = nullptr;
  const EntryInfo* entry = nullptr;
  std::uint64_t data_at = 0;  // file offset of the entry's (compressed) data
  std::uint64_t done = 0;     // uncompressed bytes read so far
  bool check_crc = true;
  std::size_t threads = 1;                     // for large stored reads
  std::uint32_t crc = 0;                       // stored entries: summed as read
  std::unique_ptr<detail::Inflater> inflater;  // deflated entries

  [[noreturn]] void fail(const std::string& what) const { archive->fail(entry->name, what); }

  void read(void* dst, std::size_t n) {
    if (n > entry->size - done) {
      fail("entry holds " + std::to_string(entry->size) + " bytes; asked for " + std::to_string(n) +
           " more after " + std::to_string(done));
    }
    auto* out = static_cast<char*>(dst);
    if (!inflater) {
      read_stored(out, n);
    } else {
      const std::size_t got = inflater->read(out, n);
      if (got != n) {
        fail(inflater->error() + " (after " + std::to_string(done + got) + " of " +
             std::to_string(entry->size) + " bytes)");
      }
    }
    done += n;
  }

  // Reads the next `n` stored bytes, in parts on several threads when they are many; each
  // part's CRC is summed slice by slice as it is read, and the parts' CRCs combined in order.
  void read_stored(char* out, std::size_t n) {
    const std::uint64_t at = data_at + done;
    if (archive->remote()) {
      read_remote(at, out, n);
      return;
    }
    const std::size_t parts = detail::worker_count(threads, n / kParallelReadBytes);
    if (parts <= 1) {
      for (std::size_t from = 0; from < n; from += kCrcSliceBytes) {
        const std::size_t len = std::min(kCrcSliceBytes, n - from);
        archive->pread_exact(at + from, out + from, len, entry->name);
        if (check_crc) crc = crc32(crc, out + from, len);  // still in the cache
      }
      return;
    }
    // Parts of whole CRC slices, the last one taking the rest.
    const std::size_t part_bytes =
        (n / parts + kCrcSliceBytes - 1) / kCrcSliceBytes * kCrcSliceBytes;
    const std::size_t count = (n + part_bytes - 1) / part_bytes;
    std::vector<std::uint32_t> crcs(count, 0);
    detail::run_in_order(
        count, count,
        [&](std::size_t i) {
          const std::size_t begin = i * part_bytes, end = std::min(n, begin + part_bytes);
          for (std::size_t from = begin; from < end; from += kCrcSliceBytes) {
            const std::size_t len = std::min(kCrcSliceBytes, end - from);
            archive->pread_exact(at + from, out + from, len, entry->name);
            if (check_crc) crcs[i] = crc32(crcs[i], out + from, len);  // still in the cache
          }
        },
        [&](std::size_t i) {
          const std::size_t begin = i * part_bytes, end = std::min(n, begin + part_bytes);
          if (check_crc) crc = crc32_combine(crc, crcs[i], end - begin);
        });
  }

  // A remote entry's bytes: a request per part of kRemotePartBytes, kRemoteStreams at once,
  // each straight into the caller's memory and its CRC summed as it lands.
  void read_remote(std::uint64_t at, char* out, std::size_t n) {
    const std::size_t count =
        std::max<std::size_t>(1, (n + kRemotePartBytes - 1) / kRemotePartBytes);
    std::vector<std::uint32_t> crcs(count, 0);
    detail::run_in_order(
        count, std::min(count, kRemoteStreams),
        [&](std::size_t i) {
          const std::size_t begin = i * kRemotePartBytes,
                            len = std::min(kRemotePartBytes, n - begin);
          archive->pread_exact(at + begin, out + begin, len, entry->name);
          if (check_crc) crcs[i] = crc32(0, out + begin, len);
        },
        [&](std::size_t i) {
          const std::size_t begin = i * kRemotePartBytes;
          if (check_crc) crc = crc32_combine(crc, crcs[i], std::min(kRemotePartBytes, n - begin));
        });
  }

  void finish() {
    if (done != entry->size) {
      fail("read " + std::to_string(done) + " of " + std::to_string(entry->size) + " bytes");
    }
    std::uint32_t found = crc;
    if (inflater) {
      if (!inflater->at_end()) {
        fail(inflater->status() == detail::Inflater::Status::kOk
                 ? "deflate stream holds more than the central directory's " +
                       std::to_string(entry->size) + " bytes"
                 : inflater->error() + " (after " + std::to_string(done) + " bytes)");
      }
      found = inflater->crc();
    }
    if (check_crc && found != entry->crc) {
      char text[64];
      std::snprintf(text, sizeof text, "CRC-32 mismatch (expected %08x, found %08x)", entry->crc,
                    found);
      fail(std::string(text) + ": the data is corrupt");
    }
  }
};

EntryReader::EntryReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EntryReader::EntryReader(EntryReader&&) noexcept = default;
EntryReader& EntryReader::operator=(EntryReader&&) noexcept = default;
EntryReader::~EntryReader() = default;

void EntryReader::read(void* dst, std::size_t n) { impl_->read(dst, n); }

void EntryReader::skip(std::size_t n) {
  char scratch[4096];
  while (n > 0) {
    const std::size_t k = std::min(n, sizeof scratch);
    impl_->read(scratch, k);
    n -= k;
  }
}

std::uint64_t EntryReader::remaining() const { return impl_->entry->size - impl_->done; }

void EntryReader::finish() { impl_->finish(); }

EntryReader ArchiveReader::open_entry(std::string_view entry_name, bool check_crc,
                                      std::size_t threads) const {
  const EntryInfo& e = impl_->checked(entry_name);
  auto r = std::make_unique<EntryReader::Impl>();
  r->archive = impl_.get();
  r->entry = &e;
  r->data_at = impl_->locate(impl_->position(e));
  impl_->entry_used[impl_->position(e)] = 1;
  r->check_crc = check_crc;
  r->threads = threads;
  if (e.method == ZIP_CM_DEFLATE) {
    if (impl_->memory) {
      r->inflater = std::make_unique<detail::Inflater>(std::string_view(
          impl_->memory->data() + r->data_at, static_cast<std::size_t>(e.compressed_size)));
    } else {
      const Impl* archive = impl_.get();
      auto source = [archive, &e, at = r->data_at, pos = std::uint64_t{0}](
                        char* dst, std::size_t max) mutable {
        archive->pread_exact(at + pos, dst, max, e.name);
        pos += max;
        return max;
      };
      r->inflater = std::make_unique<detail::Inflater>(source, e.compressed_size);
    }
  }
  return EntryReader(std::move(r));
}

std::string ArchiveReader::read(std::string_view entry_name) const {
  EntryReader r = open_entry(entry_name, true);
  std::string out(static_cast<std::size_t>(r.remaining()), '\0');
  r.read(out.data(), out.size());
  r.finish();
  return out;
}

std::string ArchiveReader::read_head(std::string_view entry_name, std::size_t n) const {
  EntryReader r = open_entry(entry_name, false);
  std::string out(static_cast<std::size_t>(std::min<std::uint64_t>(n, r.remaining())), '\0');
  r.read(out.data(), out.size());
  return out;
}

std::vector<std::string> ArchiveReader::check_untouched(bool check_crc) const {
  std::vector<std::string> checked;
  for (std::size_t i = 0; i < impl_->entries.size(); ++i) {
    if (impl_->entry_used[i]) continue;
    const EntryInfo& e = impl_->entries[i];
    EntryReader r = open_entry(e.name, check_crc);
    // Remote entries are read in requests of kRemotePartBytes, local ones through the cache.
    std::vector<char> buffer(impl_->remote() ? kRemotePartBytes : std::size_t{1} << 16);
    for (std::uint64_t left = check_crc ? e.size : 0; left > 0;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer.size()));
      r.read(buffer.data(), n);
      left -= n;
    }
    if (check_crc) r.finish();
    checked.push_back(e.name);
  }
  return checked;
}

std::uint64_t ArchiveReader::data_offset(std::string_view entry_name) const {
  const std::size_t i = impl_->position(impl_->checked(entry_name));
  const std::uint64_t at = impl_->locate(i);
  impl_->entry_used[i] = 1;
  return at;
}

bool ArchiveReader::can_map() const { return !impl_->remote(); }

void ArchiveReader::prefetch_run(std::string_view first, std::string_view last,
                                 std::uint64_t last_bytes) const {
  if (!impl_->remote()) return;
  const std::size_t f = impl_->position(impl_->checked(first));
  const std::size_t l = impl_->position(impl_->checked(last));
  const std::uint64_t begin = impl_->local_offsets[f];
  const std::uint64_t end =
      std::min(impl_->span_ends[l], impl_->local_offsets[l] + kRemoteHeadBytes +
                                        impl_->entries[l].name.size() + last_bytes);
  if (end > begin) impl_->file->prefetch(begin, end - begin);
}

void ArchiveReader::prefetch(std::string_view entry_name) const {
  if (!impl_->remote()) return;
  const std::size_t i = impl_->position(impl_->checked(entry_name));
  if (impl_->data_offsets[i] == 0) impl_->prefetch_entry(i, true);
}

ArchiveMapping ArchiveReader::mapping() const {
  if (impl_->map) return impl_->map;
  if (impl_->memory) {
    impl_->map = ArchiveMapping(impl_->memory, impl_->memory->data());
    return impl_->map;
  }
  if (impl_->file->fd() < 0) {
    detail::throw_io_error(impl_->name, "", "cannot map a remote object (read it instead)");
  }
  const std::size_t len = static_cast<std::size_t>(impl_->file_bytes);
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, impl_->file->fd(), 0);
  if (p == MAP_FAILED) {
    detail::throw_io_error(impl_->name, "", "cannot map the file: " + errno_text(errno));
  }
  impl_->map = ArchiveMapping(static_cast<char*>(p), [len](char* q) { ::munmap(q, len); });
  return impl_->map;
}

}  // namespace zanj
