// SPDX-License-Identifier: MIT
// The storage seam: every byte the library reads from or writes to a file or an object goes
// through these three interfaces, chosen by the path's scheme ("s3://bucket/key" or a POSIX
// path). The zip reader and writer, the checkpoint manager's index and listing, and the
// distributed index and rank files use them; nothing above knows which store it talks to.
// Private: part of no installed header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zanj::detail {

/// A file or object read by offset. Reads are safe from several threads at once.
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  /// Its size in bytes, known when it was opened.
  virtual std::uint64_t size() const = 0;
  /// Exactly `n` bytes at `offset` into `dst` (the caller checked the range against size()).
  /// @throws IoError when the store fails, FormatError when the file shrank.
  virtual void read_at(std::uint64_t offset, void* dst, std::size_t n) const = 0;
  /// A hint that [offset, offset + n) is about to be read in small pieces: a remote store
  /// fetches it with one request and serves those reads from memory. No-op for local files.
  virtual void prefetch(std::uint64_t /*offset*/, std::uint64_t /*n*/) const {}
  /// The bytes in memory, when the whole file is (from_bytes); nullptr otherwise.
  virtual const char* memory() const { return nullptr; }
  /// The descriptor of a local file (for mmap); -1 for memory and remote objects.
  virtual int fd() const { return -1; }
  /// True for an object store: reads cost a request each, so callers read in large pieces.
  virtual bool remote() const { return false; }
};

/// A file written front to back that appears at its path only on commit(), atomically: a local
/// file through a locked temporary, fsync and rename; an object as a multipart upload that
/// completes on commit(). Destroyed without commit(), it leaves nothing behind.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  /// Appends `n` bytes.  @throws IoError.
  virtual void append(const char* data, std::size_t n) = 0;
  /// Keeps the bytes from `offset` (already appended or about to be) patchable: a remote store
  /// holds back the part that holds them until release().
  virtual void hold(std::uint64_t /*offset*/) {}
  /// Overwrites bytes written since the last hold() (a zip's local header, once its CRC-32 is
  /// known).  @throws IoError.
  virtual void patch(std::uint64_t offset, std::string_view bytes) = 0;
  /// Ends the hold: held parts may go.
  virtual void release() {}
  /// Bytes appended so far.
  virtual std::uint64_t size() const = 0;
  /// Makes the file appear at its path (fsync, rename, directory fsync; or the upload's
  /// completion).  @throws IoError; the path then holds what it held before.
  virtual void commit() = 0;
};

/// One entry of a listing: a file (object) or a directory (common prefix).
struct StorageEntry {
  std::string name;  ///< the last path component
  bool directory = false;
};

/// A store: local files or an object store.
class Storage {
 public:
  virtual ~Storage() = default;
  /// Opens a file for reading.  @throws IoError ("no such file" when it is missing).
  virtual std::unique_ptr<RandomAccessFile> open(const std::string& path) const = 0;
  /// Starts writing a file that appears at `path` on commit() (parents created as needed).
  virtual std::unique_ptr<WritableFile> create(const std::string& path) const = 0;
  /// The whole file, or nullopt when there is none.  @throws IoError for other failures.
  virtual std::optional<std::string> read_if_exists(const std::string& path) const;
  /// Writes `bytes` at `path` crash-safely (create, append, commit).
  virtual void write_atomically(const std::string& path, std::string_view bytes) const;
  /// The files and directories directly under `directory` (empty when it does not exist).
  virtual std::vector<StorageEntry> list(const std::string& directory) const = 0;
  /// Whether a file (not a directory) is at `path`.
  virtual bool is_file(const std::string& path) const = 0;
  /// Removes the file, or the directory with everything under it.  @throws IoError.
  virtual void remove_all(const std::string& path) const = 0;
  /// Creates the directory and its parents (nothing to do for an object store).
  virtual void create_directories(const std::string& directory) const = 0;
  /// Removes what an interrupted writer left under `directory` whose name starts with
  /// "." + one of `prefixes` (local temporaries no live writer holds); the names removed.
  virtual std::vector<std::string> remove_stale_temporaries(
      const std::string& directory, const std::vector<std::string>& prefixes) const = 0;
};

/// Up to `n` leading bytes of the file (a format's magic number).  @throws IoError.
std::string read_prefix(const std::string& path, std::size_t n);

/// "s3://..." paths.
bool is_object_uri(std::string_view path);
/// `directory` / `name`, in the path's own syntax.
std::string join_path(const std::string& directory, const std::string& name);
/// The last component of a path or URI.
std::string last_component(const std::string& path);
/// The store for `path`, by its scheme.  @throws UsageError for a scheme this build lacks.
const Storage& storage_for(const std::string& path);
/// The local-file store.
const Storage& posix_storage();

/// A file held in memory (ArchiveReader::from_bytes).
std::unique_ptr<RandomAccessFile> memory_file(std::shared_ptr<const std::string> bytes);
/// A file written into a string, which commit() fills (ArchiveWriter to memory).
std::unique_ptr<WritableFile> memory_writer(std::string* destination);

}  // namespace zanj::detail
