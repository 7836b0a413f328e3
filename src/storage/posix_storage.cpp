// SPDX-License-Identifier: MIT
// Local files: pread for reads; writes through a hidden, locked temporary beside the final
// path, fsync, rename, directory fsync (the one crash-safe write path of the library).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "../save_stages.hpp"
#include "configured_model/errors.hpp"
#include "storage.hpp"

namespace zanj::detail {
namespace fs = std::filesystem;
namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Writeback of written data is started every this many bytes (sync_file_range), so the disk
// works while later data is produced and commit()'s fsync has little left to wait for.
constexpr std::uint64_t kWritebackBytes = 8 << 20;

class PosixFile final : public RandomAccessFile {
 public:
  PosixFile(std::string path, int fd, std::uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  ~PosixFile() override { ::close(fd_); }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  std::uint64_t size() const override { return size_; }
  int fd() const override { return fd_; }

  void read_at(std::uint64_t offset, void* dst, std::size_t n) const override {
    auto* out = static_cast<char*>(dst);
    std::size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd_, out + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw_io_error(path_, "", "read failed: " + errno_text(errno));
      if (r == 0) {
        throw_format_error(path_, "", "file truncated while reading (it shrank after opening?)");
      }
      done += static_cast<std::size_t>(r);
    }
  }

 private:
  std::string path_;
  int fd_;
  std::uint64_t size_;
};

class PosixWriter final : public WritableFile {
 public:
  explicit PosixWriter(std::string path) : path_(std::move(path)) {
    const fs::path final_path = fs::absolute(path_);
    std::error_code ec;
    fs::create_directories(final_path.parent_path(), ec);
    if (ec) {
      throw_io_error(
          path_, "",
          "cannot create directory " + final_path.parent_path().string() + ": " + ec.message());
    }
    std::random_device rd;
    // A leading dot and a ".tmp" suffix: never mistaken for a checkpoint by a *.zanj glob.
    tmp_ = (final_path.parent_path() /
            ("." + final_path.filename().string() + "." + std::to_string(::getpid()) + "-" +
             std::to_string(rd()) + ".tmp"))
               .string();
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      const int err = errno;
      throw_io_error(path_, "", "cannot create a temporary file next to it: " + errno_text(err));
    }
    // Held until the file is renamed into place: a clean-up (remove_stale_temporaries)
    // removes only temporaries whose lock it can take, i.e. those whose writer died.
    (void)::flock(fd_, LOCK_EX | LOCK_NB);
    report_save_stage(SaveStage::kTemporaryCreated, path_);
  }
  ~PosixWriter() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  PosixWriter(const PosixWriter&) = delete;
  PosixWriter& operator=(const PosixWriter&) = delete;

  void append(const char* p, std::size_t n) override {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw_io_error(path_, "", "write to " + tmp_ + " failed: " + errno_text(errno));
      }
      p += w;
      n -= static_cast<std::size_t>(w);
      size_ += static_cast<std::uint64_t>(w);
    }
    if (size_ - writeback_from_ >= kWritebackBytes) {
      // Advisory: an error here (a file system without it) leaves the work to fsync.
      (void)::sync_file_range(fd_, static_cast<off_t>(writeback_from_),
                              static_cast<off_t>(size_ - writeback_from_), SYNC_FILE_RANGE_WRITE);
      writeback_from_ = size_;
    }
  }

  void patch(std::uint64_t at, std::string_view bytes) override {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t w =
          ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(at + done));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw_io_error(path_, "", "write to " + tmp_ + " failed: " + errno_text(errno));
      }
      done += static_cast<std::size_t>(w);
    }
  }

  std::uint64_t size() const override { return size_; }

  void commit() override {
    report_save_stage(SaveStage::kDataWritten, path_);
    if (::fsync(fd_) != 0) {
      throw_io_error(path_, "", "fsync of " + tmp_ + " failed: " + errno_text(errno));
    }
    report_save_stage(SaveStage::kTemporarySynced, path_);
    // Renamed while still open (and locked), so that no clean-up can take it in between.
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      throw_io_error(path_, "", "cannot rename " + tmp_ + " into place: " + errno_text(errno));
    }
    committed_ = true;
    report_save_stage(SaveStage::kRenamed, path_);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw_io_error(path_, "", "close failed: " + errno_text(errno));
    sync_directory(fs::absolute(path_).parent_path().string());
    report_save_stage(SaveStage::kDirectorySynced, path_);
  }

 private:
  void sync_directory(const std::string& dir) const {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;  // nothing more we can do for durability; the file itself is synced
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    // Some file systems refuse fsync on directories; not a data-loss risk we can act on.
    if (rc != 0 && err != EINVAL && err != EROFS) {
      throw_io_error(path_, "", "fsync of directory " + dir + " failed: " + errno_text(err));
    }
  }

  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint64_t writeback_from_ = 0;
  bool committed_ = false;
};

class PosixStorage final : public Storage {
 public:
  std::unique_ptr<RandomAccessFile> open(const std::string& path) const override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      throw_io_error(path, "",
                     errno == ENOENT ? "no such file" : "cannot open: " + errno_text(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      throw_io_error(path, "", "cannot stat: " + errno_text(err));
    }
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      throw_io_error(path, "", "is a directory, not a file");
    }
    return std::make_unique<PosixFile>(path, fd, static_cast<std::uint64_t>(st.st_size));
  }

  std::unique_ptr<WritableFile> create(const std::string& path) const override {
    return std::make_unique<PosixWriter>(path);
  }

  std::optional<std::string> read_if_exists(const std::string& path) const override {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return std::nullopt;
    return Storage::read_if_exists(path);
  }

  std::vector<StorageEntry> list(const std::string& directory) const override {
    std::vector<StorageEntry> out;
    std::error_code ec;
    if (!fs::is_directory(directory, ec)) return out;
    for (const auto& entry : fs::directory_iterator(directory, ec)) {
      std::error_code type_ec;
      const bool dir = entry.is_directory(type_ec);
      if (!dir && !entry.is_regular_file(type_ec)) continue;
      out.push_back({entry.path().filename().string(), dir});
    }
    if (ec) throw_io_error(directory, "", "cannot list: " + ec.message());
    return out;
  }

  bool is_file(const std::string& path) const override {
    std::error_code ec;
    return fs::is_regular_file(path, ec);
  }

  void remove_all(const std::string& path) const override {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec) throw_io_error(path, "", "cannot remove: " + ec.message());
  }

  void create_directories(const std::string& directory) const override {
    std::error_code ec;
    fs::create_directories(directory, ec);
    if (ec) throw_io_error(directory, "", "cannot create directory: " + ec.message());
  }

  std::vector<std::string> remove_stale_temporaries(
      const std::string& directory, const std::vector<std::string>& prefixes) const override {
    std::vector<std::string> removed;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(directory, ec)) {
      const std::string name = entry.path().filename().string();
      bool ours = false;
      for (const auto& prefix : prefixes) ours |= name.rfind("." + prefix, 0) == 0;
      ours = ours && name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0;
      std::error_code type_ec;
      if (!ours || !entry.is_regular_file(type_ec)) continue;
      const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        std::error_code rm;
        fs::remove(entry.path(), rm);
        if (!rm) removed.push_back(name);
      }
      ::close(fd);
    }
    return removed;
  }
};

}  // namespace

const Storage& posix_storage() {
  static const PosixStorage storage;
  return storage;
}

}  // namespace zanj::detail
