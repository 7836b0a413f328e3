// SPDX-License-Identifier: MIT
// One plain file written crash-safely (see durable_file.hpp).
#include "durable_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "../save_stages.hpp"
#include "configured_model/errors.hpp"

namespace fs = std::filesystem;

namespace zanj::detail {

DurableFile::DurableFile(std::string path) : path_(std::move(path)) {
  const fs::path final_path = fs::absolute(path_);
  std::error_code ec;
  fs::create_directories(final_path.parent_path(), ec);
  if (ec) {
    throw_io_error(
        path_, "",
        "cannot create directory " + final_path.parent_path().string() + ": " + ec.message());
  }
  std::random_device rd;
  tmp_ = (final_path.parent_path() /
          ("." + final_path.filename().string() + "." + std::to_string(::getpid()) + "-" +
           std::to_string(rd()) + ".tmp"))
             .string();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    throw_io_error(path_, "",
                   "cannot create a temporary file next to it: " + std::string(std::strerror(err)));
  }
  // Held until renamed: clean-ups remove only temporaries whose lock they can take.
  (void)::flock(fd_, LOCK_EX | LOCK_NB);
  report_save_stage(SaveStage::kTemporaryCreated, path_);
}

DurableFile::~DurableFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void DurableFile::write(std::string_view bytes) {
  const char* p = bytes.data();
  std::size_t n = bytes.size();
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      throw_io_error(path_, "", "write to " + tmp_ + " failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void DurableFile::commit() {
  report_save_stage(SaveStage::kDataWritten, path_);
  if (::fsync(fd_) != 0)
    throw_io_error(path_, "", "fsync failed: " + std::string(std::strerror(errno)));
  report_save_stage(SaveStage::kTemporarySynced, path_);
  // Renamed while still open (and locked), so no clean-up can take it for an orphan.
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    throw_io_error(path_, "", "cannot rename " + tmp_ + " into place: " + std::strerror(errno));
  }
  committed_ = true;
  report_save_stage(SaveStage::kRenamed, path_);
  ::close(fd_);
  fd_ = -1;
  const std::string dir = fs::absolute(path_).parent_path().string();
  const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d >= 0) {
    (void)::fsync(d);
    ::close(d);
  }
  report_save_stage(SaveStage::kDirectorySynced, path_);
}

}  // namespace zanj::detail

namespace zanj::detail {

std::vector<std::string> remove_stale_temporaries(const std::string& directory,
                                                  const std::vector<std::string>& prefixes) {
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

}  // namespace zanj::detail
