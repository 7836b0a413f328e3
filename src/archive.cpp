// SPDX-License-Identifier: MIT
#include "configured_model/archive.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zip.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "configured_model/errors.hpp"
#include "configured_model/logging.hpp"

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

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) {
    detail::throw_io_error(path, "", "cannot open for fsync: " + errno_text(errno));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems do not support fsync on directories; that is not a data-loss risk we
  // can do anything about, so only file fsync failures are fatal.
  if (rc != 0 && !(directory && (err == EINVAL || err == EROFS))) {
    detail::throw_io_error(path, "", "fsync failed: " + errno_text(err));
  }
}

std::string temporary_name(const fs::path& final_path) {
  std::random_device rd;
  const auto tag = std::to_string(::getpid()) + "-" + std::to_string(rd());
  // A leading dot and a ".tmp" suffix: never mistaken for a checkpoint by a *.zanj glob.
  return (final_path.parent_path() / ("." + final_path.filename().string() + "." + tag + ".tmp"))
      .string();
}

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
// ArchiveWriter

struct ArchiveWriter::Impl {
  std::string tmp_path;
  zip_t* za = nullptr;
  std::vector<std::unique_ptr<std::string>> buffers;  // libzip reads them in zip_close()
  std::unordered_set<std::string> names;
  bool committed = false;
};

ArchiveWriter::ArchiveWriter(std::string path) : path_(std::move(path)), impl_(new Impl) {
  const fs::path final_path = fs::absolute(path_);
  std::error_code ec;
  fs::create_directories(final_path.parent_path(), ec);
  if (ec) {
    detail::throw_io_error(
        path_, "",
        "cannot create directory " + final_path.parent_path().string() + ": " + ec.message());
  }
  impl_->tmp_path = temporary_name(final_path);
  int code = 0;
  impl_->za = zip_open(impl_->tmp_path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
  if (!impl_->za) {
    detail::throw_io_error(path_, "", "cannot create archive: " + zip_error_text(code));
  }
}

ArchiveWriter::~ArchiveWriter() {
  if (impl_ && !impl_->committed) {
    if (impl_->za) zip_discard(impl_->za);
    std::error_code ec;
    fs::remove(impl_->tmp_path, ec);
  }
}

void ArchiveWriter::add(const std::string& name, std::string bytes, Compression compression) {
  if (!impl_->names.insert(name).second) {
    detail::throw_format_error(path_, name, "entry added twice");
  }
  impl_->buffers.push_back(std::make_unique<std::string>(std::move(bytes)));
  const std::string& buf = *impl_->buffers.back();
  zip_source_t* src = zip_source_buffer(impl_->za, buf.data(), buf.size(), 0);
  if (!src) detail::throw_io_error(path_, name, "cannot add entry: " + zip_error_text(impl_->za));
  const zip_int64_t idx = zip_file_add(impl_->za, name.c_str(), src, ZIP_FL_ENC_UTF_8);
  if (idx < 0) {
    zip_source_free(src);
    detail::throw_io_error(path_, name, "cannot add entry: " + zip_error_text(impl_->za));
  }
  const zip_int32_t method = compression == Compression::kDeflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE;
  if (zip_set_file_compression(impl_->za, static_cast<zip_uint64_t>(idx), method, 0) != 0) {
    detail::throw_io_error(path_, name, "cannot set compression: " + zip_error_text(impl_->za));
  }
}

void ArchiveWriter::commit() {
  if (impl_->committed) return;
  if (zip_close(impl_->za) != 0) {
    const std::string why = zip_error_text(impl_->za);
    zip_discard(impl_->za);
    impl_->za = nullptr;
    std::error_code ec;
    fs::remove(impl_->tmp_path, ec);
    detail::throw_io_error(path_, "", "writing the archive failed: " + why);
  }
  impl_->za = nullptr;
  impl_->buffers.clear();
  try {
    fsync_path(impl_->tmp_path, false);
    if (::rename(impl_->tmp_path.c_str(), path_.c_str()) != 0) {
      detail::throw_io_error(
          path_, "", "cannot rename " + impl_->tmp_path + " into place: " + errno_text(errno));
    }
  } catch (...) {
    std::error_code ec;
    fs::remove(impl_->tmp_path, ec);
    throw;
  }
  impl_->committed = true;
  fsync_path(fs::absolute(path_).parent_path().string(), true);
}

// ---------------------------------------------------------------------------------------------
// ArchiveReader

struct ArchiveReader::Impl {
  std::string name;
  std::uint64_t file_bytes = 0;  // size of the whole archive, bounds every declared size
  std::string memory;            // backing bytes for from_bytes()
  zip_t* za = nullptr;
  ArchiveLimits limits;
  std::vector<EntryInfo> entries;
  std::unordered_map<std::string_view, std::size_t> index;

  ~Impl() {
    if (za) zip_discard(za);
  }

  void load_directory() {
    const zip_int64_t n = zip_get_num_entries(za, 0);
    if (n < 0) detail::throw_format_error(name, "", "cannot read the zip central directory");
    if (static_cast<std::uint64_t>(n) > limits.max_entries) {
      detail::throw_format_error(name, "",
                                 "too many entries (limit " + std::to_string(limits.max_entries) +
                                     ", found " + std::to_string(n) + ")");
    }
    entries.reserve(static_cast<std::size_t>(n));
    for (zip_int64_t i = 0; i < n; ++i) {
      zip_stat_t st;
      zip_stat_init(&st);
      if (zip_stat_index(za, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW, &st) != 0 ||
          !(st.valid & ZIP_STAT_NAME)) {
        detail::throw_format_error(name, "entry #" + std::to_string(i),
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
        detail::throw_format_error(name, entries[i].name, "duplicate entry name in the zip");
      }
    }
  }
};

ArchiveReader::ArchiveReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ArchiveReader::ArchiveReader(ArchiveReader&&) noexcept = default;
ArchiveReader& ArchiveReader::operator=(ArchiveReader&&) noexcept = default;
ArchiveReader::~ArchiveReader() = default;

ArchiveReader ArchiveReader::open(const std::string& path, const ArchiveLimits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->name = path;
  impl->limits = limits;
  std::error_code ec;
  if (!fs::exists(path, ec)) detail::throw_io_error(path, "", "no such file");
  if (fs::is_directory(path, ec)) detail::throw_io_error(path, "", "is a directory, not a file");
  impl->file_bytes = fs::file_size(path, ec);
  if (impl->file_bytes < kMinZipBytes) {
    detail::throw_format_error(path, "", kTooShort);
  }
  int code = 0;
  impl->za = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
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
  impl->memory = std::move(bytes);
  impl->file_bytes = impl->memory.size();
  if (impl->memory.size() < kMinZipBytes) detail::throw_format_error(impl->name, "", kTooShort);
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* src = zip_source_buffer_create(impl->memory.data(), impl->memory.size(), 0, &err);
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
  const EntryInfo* e = find(entry_name);
  const std::string& file = impl_->name;
  if (!e) detail::throw_format_error(file, entry_name, "no such entry in the archive");
  const auto& limits = impl_->limits;
  // Declared sizes are checked against the file before anything is allocated.
  if (e->compressed_size > impl_->file_bytes) {
    detail::throw_format_error(file, entry_name,
                               "declared compressed size " + std::to_string(e->compressed_size) +
                                   " exceeds the archive size " +
                                   std::to_string(impl_->file_bytes));
  }
  if (e->method == ZIP_CM_STORE && e->size != e->compressed_size) {
    detail::throw_format_error(file, entry_name,
                               "stored entry with size " + std::to_string(e->size) +
                                   " != compressed size " + std::to_string(e->compressed_size));
  }
  if (e->method != ZIP_CM_STORE && e->compressed_size == 0 && e->size > 0) {
    detail::throw_format_error(file, entry_name, "deflated entry with no compressed data");
  }
  if (e->size > limits.max_entry_bytes) {
    detail::throw_format_error(file, entry_name,
                               "entry of " + std::to_string(e->size) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(limits.max_entry_bytes));
  }
  if (e->method != ZIP_CM_STORE && e->compressed_size > 0 &&
      e->size / e->compressed_size > limits.max_compression_ratio) {
    detail::throw_format_error(file, entry_name,
                               "compression ratio " + std::to_string(e->size / e->compressed_size) +
                                   ":1 exceeds the limit of " +
                                   std::to_string(limits.max_compression_ratio) + ":1");
  }
  if (e->method != ZIP_CM_STORE && e->method != ZIP_CM_DEFLATE) {
    detail::throw_format_error(file, entry_name,
                               "unsupported compression method " + std::to_string(e->method) +
                                   " (expected 0 stored or 8 deflate)");
  }
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

}  // namespace zanj
