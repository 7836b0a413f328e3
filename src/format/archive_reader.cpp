// SPDX-License-Identifier: MIT
// The zip reader: libzip parses and checks the archive and reads compressed entries; stored
// entries are read (or mapped) straight from the file at offsets found by a small scan of the
// central directory, which libzip does not expose.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "configured_model/archive.hpp"
#include "configured_model/checksum.hpp"
#include "configured_model/errors.hpp"
#include "zip_format.hpp"

namespace zanj {
namespace fs = std::filesystem;
namespace {

std::string zip_error_text(zip_t* za) { return zip_strerror(za); }

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
  std::uint64_t file_bytes = 0;         // size of the whole archive, bounds every declared size
  int fd = -1;                          // the file, for open()
  std::shared_ptr<std::string> memory;  // the bytes, for from_bytes()
  zip_t* za = nullptr;
  ArchiveLimits limits;
  std::vector<EntryInfo> entries;
  std::unordered_map<std::string_view, std::size_t> index;
  std::vector<std::uint64_t> local_offsets;         // local header of each entry, central-dir order
  mutable std::vector<std::uint64_t> data_offsets;  // 0 until located
  mutable ArchiveMapping map;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (za) zip_discard(za);
    if (fd >= 0) ::close(fd);
  }

  [[noreturn]] void fail(std::string_view entry, const std::string& what) const {
    detail::throw_format_error(name, entry, what);
  }

  // Exactly `n` bytes at `offset` of the archive, or a FormatError for truncation.
  void pread_exact(std::uint64_t offset, void* dst, std::size_t n, std::string_view entry) const {
    if (offset > file_bytes || n > file_bytes - offset) {
      fail(entry, "needs bytes " + std::to_string(offset) + ".." + std::to_string(offset + n) +
                      " past the archive's end (" + std::to_string(file_bytes) + " bytes)");
    }
    if (memory) {
      std::memcpy(dst, memory->data() + offset, n);
      return;
    }
    auto* out = static_cast<char*>(dst);
    std::size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd, out + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) detail::throw_io_error(name, entry, "read failed: " + errno_text(errno));
      if (r == 0) fail(entry, "archive truncated while reading (it shrank after opening?)");
      done += static_cast<std::size_t>(r);
    }
  }

  std::string pread_string(std::uint64_t offset, std::size_t n, std::string_view entry) const {
    std::string out(n, '\0');
    pread_exact(offset, out.data(), n, entry);
    return out;
  }

  void load_directory() {
    const zip_int64_t n = zip_get_num_entries(za, 0);
    if (n < 0) fail("", "cannot read the zip central directory");
    if (static_cast<std::uint64_t>(n) > limits.max_entries) {
      fail("", "too many entries (limit " + std::to_string(limits.max_entries) + ", found " +
                   std::to_string(n) + ")");
    }
    entries.reserve(static_cast<std::size_t>(n));
    for (zip_int64_t i = 0; i < n; ++i) {
      zip_stat_t st;
      zip_stat_init(&st);
      if (zip_stat_index(za, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW, &st) != 0 ||
          !(st.valid & ZIP_STAT_NAME)) {
        fail("entry #" + std::to_string(i),
             "unreadable central directory record: " + zip_error_text(za));
      }
      EntryInfo e;
      e.name = st.name;
      e.size = st.size;
      e.compressed_size = st.comp_size;
      e.method = st.comp_method;
      e.crc = st.crc;
      entries.push_back(std::move(e));
    }
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (!index.emplace(entries[i].name, i).second) {
        fail(entries[i].name, "duplicate entry name in the zip");
      }
    }
    scan_local_offsets();
  }

  // libzip keeps each entry's local-header offset to itself; stored reads and mappings need
  // it, so the central directory (already checked by libzip) is walked once more for it.
  void scan_local_offsets() {
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
    if (end == std::string::npos) fail("", "end of central directory record not found");
    std::uint64_t count = get_le(&tail[end + 10], 2);
    std::uint64_t cd_size = get_le(&tail[end + 12], 4);
    std::uint64_t cd_offset = get_le(&tail[end + 16], 4);
    std::uint64_t cd_end = tail_at + end;
    if (count == kMax16 || cd_size == kMax32 || cd_offset == kMax32) {
      if (tail_at + end < kEnd64LocatorBytes) fail("", "zip64 end locator missing");
      const std::string loc =
          pread_string(tail_at + end - kEnd64LocatorBytes, kEnd64LocatorBytes, "");
      if (get_le(loc.data(), 4) != kEnd64LocatorSig) fail("", "zip64 end locator missing");
      const std::uint64_t end64 = get_le(&loc[8], 8);
      const std::string rec = pread_string(end64, kEnd64Bytes, "");
      if (get_le(rec.data(), 4) != kEnd64Sig) fail("", "zip64 end record missing");
      count = get_le(&rec[32], 8);
      cd_size = get_le(&rec[40], 8);
      cd_offset = get_le(&rec[48], 8);
      cd_end = end64;
    }
    if (count != entries.size() || cd_offset > cd_end || cd_end - cd_offset != cd_size) {
      fail("", "central directory bounds disagree with its records (prepended data?)");
    }
    const std::string cd = pread_string(cd_offset, static_cast<std::size_t>(cd_size), "");
    std::size_t pos = 0;
    local_offsets.reserve(entries.size());
    for (const EntryInfo& e : entries) {
      if (cd.size() - pos < kCentralHeaderBytes || get_le(&cd[pos], 4) != kCentralSig) {
        fail(e.name, "central directory record not found where expected");
      }
      const char* r = &cd[pos];
      const std::size_t n = get_le(r + 28, 2), m = get_le(r + 30, 2), k = get_le(r + 32, 2);
      if (cd.size() - pos - kCentralHeaderBytes < n + m + k) {
        fail(e.name, "central directory record truncated");
      }
      if (std::string_view(r + kCentralHeaderBytes, n) != e.name) {
        fail(e.name, "central directory order differs from libzip's");
      }
      std::uint64_t offset = get_le(r + 42, 4);
      if (offset == kMax32) {
        // The zip64 extra holds the 64-bit fields whose 32-bit slots are all ones, in order.
        const char* x = r + kCentralHeaderBytes + n;
        std::size_t skip =
            (get_le(r + 24, 4) == kMax32 ? 8 : 0) + (get_le(r + 20, 4) == kMax32 ? 8 : 0);
        bool found = false;
        for (std::size_t at = 0; at + 4 <= m && !found;) {
          const std::size_t len = get_le(x + at + 2, 2);
          if (at + 4 + len > m) break;
          if (get_le(x + at, 2) == kZip64ExtraId && skip + 8 <= len) {
            offset = get_le(x + at + 4 + skip, 8);
            found = true;
          }
          at += 4 + len;
        }
        if (!found) fail(e.name, "zip64 local header offset missing");
      }
      local_offsets.push_back(offset);
      pos += kCentralHeaderBytes + n + m + k;
    }
    data_offsets.assign(entries.size(), 0);
  }

  std::uint64_t locate(std::size_t i) const {
    using namespace zipfmt;  // NOLINT(google-build-using-namespace)
    if (data_offsets[i]) return data_offsets[i];
    const EntryInfo& e = entries[i];
    const std::uint64_t at = local_offsets[i];
    const std::string h = pread_string(at, kLocalHeaderBytes, e.name);
    if (get_le(h.data(), 4) != kLocalSig) fail(e.name, "local header not found");
    const std::uint64_t n = get_le(&h[26], 2), m = get_le(&h[28], 2);
    if (pread_string(at + kLocalHeaderBytes, n, e.name) != e.name) {
      fail(e.name, "local header names another entry");
    }
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
  auto impl = std::make_unique<Impl>();
  impl->name = path;
  impl->limits = limits;
  impl->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (impl->fd < 0) {
    detail::throw_io_error(path, "",
                           errno == ENOENT ? "no such file" : "cannot open: " + errno_text(errno));
  }
  struct stat st {};
  if (::fstat(impl->fd, &st) != 0)
    detail::throw_io_error(path, "", "cannot stat: " + errno_text(errno));
  if (S_ISDIR(st.st_mode)) detail::throw_io_error(path, "", "is a directory, not a file");
  impl->file_bytes = static_cast<std::uint64_t>(st.st_size);
  if (impl->file_bytes < kMinZipBytes) {
    detail::throw_format_error(path, "", kTooShort);
  }
  int code = 0;
  impl->za =
      zip_open(path.c_str(), ZIP_RDONLY | (limits.check_consistency ? ZIP_CHECKCONS : 0), &code);
  if (!impl->za) {
    if (code == ZIP_ER_OPEN || code == ZIP_ER_READ) {
      detail::throw_io_error(path, "", "cannot open: " + zip_error_text(code));
    }
    throw_open_error(path, code, zip_error_text(code));
  }
  impl->load_directory();
  return ArchiveReader(std::move(impl));
}

ArchiveReader ArchiveReader::from_bytes(std::string bytes, std::string display_name,
                                        const ArchiveLimits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->name = std::move(display_name);
  impl->limits = limits;
  impl->memory = std::make_shared<std::string>(std::move(bytes));
  impl->file_bytes = impl->memory->size();
  if (impl->memory->size() < kMinZipBytes) detail::throw_format_error(impl->name, "", kTooShort);
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* src = zip_source_buffer_create(impl->memory->data(), impl->memory->size(), 0, &err);
  if (!src) {
    const std::string why = zip_error_strerror(&err);
    zip_error_fini(&err);
    detail::throw_io_error(impl->name, "", "cannot open: " + why);
  }
  impl->za =
      zip_open_from_source(src, ZIP_RDONLY | (limits.check_consistency ? ZIP_CHECKCONS : 0), &err);
  if (!impl->za) {
    const std::string why = zip_error_strerror(&err);
    const int code = zip_error_code_zip(&err);
    zip_error_fini(&err);
    zip_source_free(src);
    throw_open_error(impl->name, code, why);
  }
  zip_error_fini(&err);
  impl->load_directory();
  return ArchiveReader(std::move(impl));
}

const std::vector<EntryInfo>& ArchiveReader::entries() const { return impl_->entries; }

const std::string& ArchiveReader::name() const { return impl_->name; }

const EntryInfo* ArchiveReader::find(std::string_view name) const {
  auto it = impl_->index.find(name);
  return it == impl_->index.end() ? nullptr : &impl_->entries[it->second];
}

std::string ArchiveReader::read(std::string_view entry_name) const {
  const EntryInfo* e = &impl_->checked(entry_name);
  const std::string& file = impl_->name;
  const auto idx = impl_->index.at(e->name);
  zip_file_t* zf = zip_fopen_index(impl_->za, idx, 0);
  if (!zf) {
    detail::throw_format_error(file, entry_name, "cannot open entry: " + zip_error_text(impl_->za));
  }
  std::string out(static_cast<std::size_t>(e->size), '\0');
  std::size_t done = 0;
  while (done < out.size()) {
    const zip_int64_t n = zip_fread(zf, &out[done], out.size() - done);
    if (n < 0) {
      const std::string why = zip_file_strerror(zf);
      zip_fclose(zf);
      detail::throw_format_error(file, entry_name, "corrupt entry data: " + why);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  // One more read reaches the end of the stream, where libzip verifies the CRC-32.
  char probe = 0;
  const zip_int64_t extra = zip_fread(zf, &probe, 1);
  const std::string why = extra < 0 ? zip_file_strerror(zf) : std::string();
  zip_fclose(zf);
  if (extra < 0) detail::throw_format_error(file, entry_name, "corrupt entry data: " + why);
  if (done != out.size() || extra > 0) {
    detail::throw_format_error(file, entry_name,
                               "entry size differs from the central directory (expected " +
                                   std::to_string(e->size) + " bytes, found " +
                                   (extra > 0 ? "more" : std::to_string(done)) + ")");
  }
  return out;
}

std::string ArchiveReader::read_head(std::string_view entry_name, std::size_t n) const {
  const EntryInfo& e = impl_->checked(entry_name);
  n = static_cast<std::size_t>(std::min<std::uint64_t>(n, e.size));
  if (e.method == ZIP_CM_STORE) return impl_->pread_string(data_offset(entry_name), n, entry_name);
  zip_file_t* zf = zip_fopen_index(impl_->za, impl_->position(e), 0);
  if (!zf) impl_->fail(entry_name, "cannot open entry: " + zip_error_text(impl_->za));
  std::string out(n, '\0');
  std::size_t done = 0;
  while (done < n) {
    const zip_int64_t r = zip_fread(zf, &out[done], n - done);
    if (r <= 0) {
      const std::string why = r < 0 ? zip_file_strerror(zf) : std::string("entry ends early");
      zip_fclose(zf);
      impl_->fail(entry_name, "corrupt entry data: " + why);
    }
    done += static_cast<std::size_t>(r);
  }
  zip_fclose(zf);
  return out;
}

std::uint64_t ArchiveReader::data_offset(std::string_view entry_name) const {
  return impl_->locate(impl_->position(impl_->checked(entry_name)));
}

void ArchiveReader::read_rest_into(std::string_view entry_name, std::string_view head, void* dst,
                                   std::size_t n, bool check_crc) const {
  const EntryInfo& e = impl_->checked(entry_name);
  if (e.method != ZIP_CM_STORE) impl_->fail(entry_name, "not a stored entry");
  if (head.size() > e.size || e.size - head.size() != n) {
    impl_->fail(entry_name, "entry holds " + std::to_string(e.size) + " bytes (expected " +
                                std::to_string(head.size() + n) + ")");
  }
  const std::uint64_t at = data_offset(entry_name) + head.size();
  auto* out = static_cast<char*>(dst);
  std::uint32_t crc = check_crc ? crc32(0, head.data(), head.size()) : 0;
  for (std::size_t done = 0; done < n; done += kCrcSliceBytes) {
    const std::size_t len = std::min(kCrcSliceBytes, n - done);
    impl_->pread_exact(at + done, out + done, len, entry_name);
    if (check_crc) crc = crc32(crc, out + done, len);  // still in the cache
  }
  if (check_crc) {
    const std::uint32_t found = crc;
    if (found != e.crc) {
      char text[64];
      std::snprintf(text, sizeof text, "CRC-32 mismatch (expected %08x, found %08x)", e.crc, found);
      impl_->fail(entry_name, std::string(text) + ": the data is corrupt");
    }
  }
}

ArchiveMapping ArchiveReader::mapping() const {
  if (impl_->map) return impl_->map;
  if (impl_->memory) {
    impl_->map = ArchiveMapping(impl_->memory, impl_->memory->data());
    return impl_->map;
  }
  const std::size_t len = static_cast<std::size_t>(impl_->file_bytes);
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, impl_->fd, 0);
  if (p == MAP_FAILED) {
    detail::throw_io_error(impl_->name, "", "cannot map the file: " + errno_text(errno));
  }
  impl_->map = ArchiveMapping(static_cast<char*>(p), [len](char* q) { ::munmap(q, len); });
  return impl_->map;
}

}  // namespace zanj
