// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zanj {

/// How an entry's bytes are stored in the zip.
enum class Compression {
  kStored,   ///< zip method 0: no compression (fast; what we write by default)
  kDeflate,  ///< zip method 8: zlib deflate (Python ZANJ's default)
};

/// One entry of an open archive, as its central directory describes it.
struct EntryInfo {
  std::string name;
  std::uint64_t size = 0;             ///< uncompressed bytes
  std::uint64_t compressed_size = 0;  ///< bytes in the file
  std::uint16_t method = 0;           ///< zip compression method (0 stored, 8 deflate)
  std::uint32_t crc = 0;
};

/// Limits checked before an entry is inflated into memory.
struct ArchiveLimits {
  std::uint64_t max_entries = 1'000'000;        ///< entries in one archive
  std::uint64_t max_entry_bytes = 1ULL << 40;   ///< uncompressed bytes of one entry (1 TiB)
  std::uint64_t max_compression_ratio = 1'000;  ///< uncompressed / compressed, deflated entries
};

/// Writes a zip archive crash-safely: entries go to a temporary file in the destination's
/// directory, which is flushed, fsync'ed and renamed over `path` by commit(), after which the
/// directory is fsync'ed. A reader never sees a half-written file under `path`; if commit() is
/// not reached (exception, crash), `path` keeps its previous content.
///
/// Not thread-safe; one writer per file.
class ArchiveWriter {
 public:
  /// Prepares to write `path`, creating missing parent directories.
  /// @throws IoError if the directory cannot be created or the temporary file opened.
  explicit ArchiveWriter(std::string path);
  ~ArchiveWriter();
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;

  /// Adds an entry holding `bytes`. The writer keeps the bytes until commit().
  /// @throws FormatError if an entry of that name was already added.
  void add(const std::string& name, std::string bytes, Compression compression);

  /// Writes the archive and atomically replaces `path` with it.
  /// @throws IoError on any write, sync or rename failure; `path` is then left untouched.
  void commit();

  /// Where the archive will end up.
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::string path_;
  std::unique_ptr<Impl> impl_;
};

/// Reads entries of a zip archive. Entry names are checked for duplicates on open; every read
/// checks the entry's CRC-32 and size. Not thread-safe: use one reader per thread.
class ArchiveReader {
 public:
  /// Opens the zip file at `path`.
  /// @throws IoError if it cannot be opened, FormatError if it is not a sound zip.
  static ArchiveReader open(const std::string& path, const ArchiveLimits& limits = {});
  /// Opens a zip held in memory; `display_name` names it in error messages.
  static ArchiveReader from_bytes(std::string bytes, std::string display_name,
                                  const ArchiveLimits& limits = {});

  ArchiveReader(ArchiveReader&&) noexcept;
  ArchiveReader& operator=(ArchiveReader&&) noexcept;
  ~ArchiveReader();

  /// Every entry, in central-directory order.
  const std::vector<EntryInfo>& entries() const;
  /// The entry called `name`, or nullptr.
  const EntryInfo* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }

  /// Reads a whole entry.
  /// @throws FormatError if it is missing, too large, or its data is corrupt (CRC, truncation).
  std::string read(std::string_view name) const;

  /// The name used in error messages (the path).
  const std::string& name() const;

 private:
  struct Impl;
  explicit ArchiveReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zanj
