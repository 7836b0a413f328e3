// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// How an entry's bytes are stored in the zip.
enum class Compression {
  kStored,   ///< zip method 0: no compression (fast; what we write by default)
  kDeflate,  ///< zip method 8: deflate (Python ZANJ's default); we compress with ISA-L
};

/// Stored entries' data starts at a multiple of this many bytes in the files we write, so that a
/// mapping of the file can hand tensors aligned memory.
inline constexpr std::uint64_t kArchiveAlignment = 64;

/// One entry of an open archive, as its central directory describes it.
struct EntryInfo {
  std::string name;
  std::uint64_t size = 0;             ///< uncompressed bytes
  std::uint64_t compressed_size = 0;  ///< bytes in the file
  std::uint16_t method = 0;           ///< zip compression method (0 stored, 8 deflate)
  std::uint32_t crc = 0;
  std::uint64_t local_offset = 0;  ///< where its local header starts in the archive
};

/// A whole archive file mapped copy-on-write (MAP_PRIVATE): pages are read from the file on
/// first touch, and a write copies the page privately, never reaching the file. The mapping is
/// released when the last shared_ptr (including those held by tensors) goes.
using ArchiveMapping = std::shared_ptr<char>;

/// Limits checked before an entry is inflated into memory.
struct ArchiveLimits {
  std::uint64_t max_entries = 1'000'000;        ///< entries in one archive
  std::uint64_t max_entry_bytes = 1ULL << 40;   ///< uncompressed bytes of one entry (1 TiB)
  std::uint64_t max_compression_ratio = 1'000;  ///< uncompressed / compressed, deflated entries
  /// Have libzip read the archive too on open, comparing every local header with the central
  /// directory and its entries with ours (reads each local header, so opening costs O(entries)
  /// reads; verify() turns it on).
  bool check_consistency = false;
};

/// ISA-L's deflate level we use unless told otherwise (0 fastest .. 3 smallest; see README).
inline constexpr int kDefaultDeflateLevel = 1;

struct ArchiveWriterOptions {
  /// Deflate level for Compression::kDeflate entries: ISA-L's 0 (fastest) .. 3 (smallest).
  int deflate_level = kDefaultDeflateLevel;
  /// Threads compressing a deflated entry's chunks (0: one per core). The file is the same
  /// whatever the number.
  std::size_t threads = 0;
  /// Write zip64 records even where 32-bit fields would do (to test zip64 readers on small
  /// files). Entries of 4 GiB or more, offsets past 4 GiB and 65535+ entries always get them.
  bool force_zip64 = false;
};

/// Writes a zip archive crash-safely and without staging: each add() streams its bytes from the
/// caller's memory to a temporary file in the destination's directory, summing the CRC-32 in the
/// same pass. commit() writes the central directory, fsyncs, renames the file
/// over `path` and fsyncs the directory. A reader never sees a half-written file under `path`;
/// if commit() is not reached (exception, crash), `path` keeps its previous content.
///
/// Stored entries' data starts at a multiple of kArchiveAlignment (the local header's extra
/// field is padded, as libtorch's writer does); files are ordinary zips (zip64 when needed).
/// Not thread-safe; one writer per file.
class ArchiveWriter {
 public:
  /// Prepares to write `path`, creating missing parent directories.
  /// @throws IoError if the directory cannot be created or the temporary file opened.
  explicit ArchiveWriter(std::string path, const ArchiveWriterOptions& options = {});
  /// Writes the archive in memory instead (an anonymous file, so the same code path and
  /// checks); commit() stores its bytes in `*destination` (for streams and sockets).
  explicit ArchiveWriter(std::string* destination, const ArchiveWriterOptions& options = {});
  ~ArchiveWriter();
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;

  /// Writes an entry whose content is the concatenation of `pieces`, straight from their
  /// memory (e.g. a `.npy` header, then a tensor's data). The pieces are not kept.
  /// @throws FormatError if an entry of that name was already added; IoError if writing fails.
  void add(const std::string& name, std::initializer_list<std::string_view> pieces,
           Compression compression);
  void add(const std::string& name, std::string_view bytes, Compression compression) {
    add(name, {bytes}, compression);
  }

  /// Bytes written to the temporary file so far.
  std::uint64_t bytes_written() const;

  /// Writes the archive and atomically replaces `path` with it.
  /// @throws IoError on any write, sync or rename failure; `path` is then left untouched.
  void commit();

  /// Where the archive will end up.
  const std::string& path() const { return path_; }

 private:
  ArchiveWriter(std::string path, std::string* memory, const ArchiveWriterOptions& options);
  struct Impl;
  std::string path_;
  std::string* memory_ = nullptr;  // in-memory archive: commit() stores the bytes here
  std::unique_ptr<Impl> impl_;
};

class ArchiveReader;

/// Stored data is read on several threads (ArchiveReader::open_entry) in parts of at least
/// this size: smaller ones are not worth a thread.
inline constexpr std::size_t kParallelReadBytes = 4 << 20;

/// One entry of an ArchiveReader being read in order (see ArchiveReader::open_entry). Several
/// EntryReaders of one ArchiveReader may read at the same time on different threads (each reads
/// the file with pread and keeps its own inflate state); the ArchiveReader must outlive them.
class EntryReader {
 public:
  EntryReader(EntryReader&&) noexcept;
  EntryReader& operator=(EntryReader&&) noexcept;
  ~EntryReader();

  /// Reads exactly `n` more bytes of the entry into `dst`.
  /// @throws FormatError if the entry has fewer bytes left or its data is corrupt or truncated.
  void read(void* dst, std::size_t n);
  /// Reads and discards `n` bytes.
  void skip(std::size_t n);
  /// Bytes of the entry not read yet.
  std::uint64_t remaining() const;
  /// Checks, once every byte was read, that the data ends where the central directory says
  /// (for deflated data: the stream ends exactly there) and, if asked at open, its CRC-32.
  /// @throws FormatError naming the entry on any difference.
  void finish();

 private:
  friend class ArchiveReader;
  struct Impl;
  explicit EntryReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Reads entries of a zip archive. Opening reads only the central directory (parsed here:
/// zip32 and zip64, bounds and limits checked before anything is allocated); entry names are
/// checked for duplicates then. An entry's local header is checked when the entry is first located.
/// read() always checks the CRC-32; open_entry() when asked. Not thread-safe, except for
/// EntryReaders already opened (see there): use one reader per thread (tensors mapped from it
/// may be used from any thread).
class ArchiveReader {
 public:
  /// Opens the zip file at `path`: a local path, or an `s3://bucket/key` URI read with HTTP
  /// range requests (two to open: the tail with the central directory, then the leading JSON
  /// entries; one per entry read after).
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

  /// Reads a whole entry and checks its CRC-32.
  /// @throws FormatError if it is missing, too large, or its data is corrupt (CRC, truncation).
  std::string read(std::string_view name) const;

  /// Reads up to `n` leading bytes of an entry (inflating only that far if it is compressed).
  /// Its CRC is not checked (the entry is partial).
  std::string read_head(std::string_view name, std::size_t n) const;

  /// Where a stored entry's bytes begin in the archive file (after its local header).
  /// @throws FormatError if the local header is missing or the data runs past the file's end.
  std::uint64_t data_offset(std::string_view name) const;

  /// Opens an entry for reading its bytes in order straight into the caller's memory: stored
  /// data is read from the file, deflated data inflated (ISA-L) as it is read. With `check_crc`
  /// the CRC-32 is summed on the fly and EntryReader::finish() compares it with the central
  /// directory. Declared sizes and limits are checked here, before anything is allocated.
  /// Reads of at least 2 x kParallelReadBytes of stored data are split into parts read on up to
  /// `threads` threads (0: one per core), each part's CRC summed as it is read.
  /// @throws FormatError if the entry is missing, breaks a limit or its local header is bad.
  EntryReader open_entry(std::string_view name, bool check_crc = true,
                         std::size_t threads = 1) const;

  /// Checks every entry no read has opened (or mapped) yet (its local header against the central
  /// directory and, with `check_crc`, its CRC-32), so that a full read of a file refuses
  /// exactly what `verify` refuses, the entries it does not need included.
  /// @return the names of the entries it checked (none had been read).
  /// @throws FormatError naming the first bad entry.
  std::vector<std::string> check_untouched(bool check_crc = true) const;

  /// The whole archive mapped copy-on-write (created on first call, then shared).
  /// @throws IoError if the file cannot be mapped (a remote object: see can_map()).
  ArchiveMapping mapping() const;
  /// Whether mapping() can work: a local file or bytes in memory, not an object (s3://).
  bool can_map() const;
  /// For a remote object (s3://): fetches the entry whole (with its local header, when it is at
  /// most 64 MiB) in one request, for reading it alone; later reads of it come from memory.
  /// Nothing for a local file.
  void prefetch(std::string_view name) const;
  /// For a remote object (s3://): fetches in one request the archive from entry `first`'s local
  /// header to entry `last`'s header and first `last_bytes` of data (never past `last`), for
  /// the reads of the entries there that follow. Nothing for a local file.
  void prefetch_run(std::string_view first, std::string_view last, std::uint64_t last_bytes) const;

  /// The name used in error messages (the path).
  const std::string& name() const;

 private:
  friend class EntryReader;
  struct Impl;
  explicit ArchiveReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zanj

CONFIGURED_MODEL_API_END
