// SPDX-License-Identifier: MIT
// The store chosen by a path's scheme, paths joined in the store's syntax, and files held in
// memory (see storage.hpp).
#include "storage.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "configured_model/errors.hpp"

namespace zanj::detail {

#ifdef CONFIGURED_MODEL_S3
const Storage& s3_storage();  // s3/s3_storage.cpp
#endif

namespace {

constexpr std::string_view kS3Scheme = "s3://";

class MemoryFile final : public RandomAccessFile {
 public:
  explicit MemoryFile(std::shared_ptr<const std::string> bytes) : bytes_(std::move(bytes)) {}
  std::uint64_t size() const override { return bytes_->size(); }
  void read_at(std::uint64_t offset, void* dst, std::size_t n) const override {
    std::memcpy(dst, bytes_->data() + offset, n);
  }
  const char* memory() const override { return bytes_->data(); }

 private:
  std::shared_ptr<const std::string> bytes_;
};

class MemoryWriter final : public WritableFile {
 public:
  explicit MemoryWriter(std::string* destination) : destination_(destination) {}
  void append(const char* data, std::size_t n) override { bytes_.append(data, n); }
  void patch(std::uint64_t offset, std::string_view bytes) override {
    if (offset > bytes_.size() || bytes.size() > bytes_.size() - offset) {
      throw UsageError("memory writer: patch past the end of what was written");
    }
    bytes_.replace(static_cast<std::size_t>(offset), bytes.size(), bytes);
  }
  std::uint64_t size() const override { return bytes_.size(); }
  void commit() override { *destination_ = std::move(bytes_); }

 private:
  std::string* destination_;
  std::string bytes_;
};

}  // namespace

std::optional<std::string> Storage::read_if_exists(const std::string& path) const {
  std::unique_ptr<RandomAccessFile> file;
  try {
    file = open(path);
  } catch (const IoError& e) {
    if (!is_file(path)) return std::nullopt;
    throw;
  }
  std::string out(static_cast<std::size_t>(file->size()), '\0');
  file->read_at(0, out.data(), out.size());
  return out;
}

void Storage::write_atomically(const std::string& path, std::string_view bytes) const {
  auto file = create(path);
  file->append(bytes.data(), bytes.size());
  file->commit();
}

std::string read_prefix(const std::string& path, std::size_t n) {
  const auto file = storage_for(path).open(path);
  std::string out(static_cast<std::size_t>(std::min<std::uint64_t>(n, file->size())), '\0');
  file->read_at(0, out.data(), out.size());
  return out;
}

bool is_object_uri(std::string_view path) { return path.substr(0, kS3Scheme.size()) == kS3Scheme; }

std::string join_path(const std::string& directory, const std::string& name) {
  if (is_object_uri(directory)) {
    if (!directory.empty() && directory.back() == '/') return directory + name;
    return directory + "/" + name;
  }
  return (std::filesystem::path(directory) / name).string();
}

std::string last_component(const std::string& path) {
  if (is_object_uri(path)) {
    std::string_view p = path;
    while (!p.empty() && p.back() == '/') p.remove_suffix(1);
    const auto slash = p.rfind('/');
    return std::string(slash == std::string_view::npos ? p : p.substr(slash + 1));
  }
  return std::filesystem::path(path).filename().string();
}

const Storage& storage_for(const std::string& path) {
  if (is_object_uri(path)) {
#ifdef CONFIGURED_MODEL_S3
    return s3_storage();
#else
    throw UsageError(path +
                     ": s3:// paths need configured_model built with libcurl "
                     "(CONFIGURED_MODEL_S3=ON, Debian's libcurl4-openssl-dev)");
#endif
  }
  return posix_storage();
}

std::unique_ptr<RandomAccessFile> memory_file(std::shared_ptr<const std::string> bytes) {
  return std::make_unique<MemoryFile>(std::move(bytes));
}

std::unique_ptr<WritableFile> memory_writer(std::string* destination) {
  return std::make_unique<MemoryWriter>(destination);
}

}  // namespace zanj::detail
