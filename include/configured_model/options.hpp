// SPDX-License-Identifier: MIT
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "configured_model/archive.hpp"
#include "configured_model/export.hpp"
#include "configured_model/json_text.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// How tensors below the external threshold are written inside `__zanj__.json`
/// (Python ZANJ's `internal_array_mode`).
enum class ArrayMode {
  kListMeta,  ///< "array_list_meta": nested JSON lists (Python's default; human-readable)
  kHexMeta,   ///< "array_hex_meta": little-endian bytes as lowercase hex
  kB64Meta,   ///< "array_b64_meta": little-endian bytes as standard base64
};

/// What happens when a file is readable but not quite right (a tensor whose `.npy` dtype differs
/// from its JSON dtype and is cast, a `$ref` that `externals_info` does not list, a missing
/// `__zanj_meta__.json`, a newer library version). Mirrors Python's ErrorMode.
enum class ErrorMode {
  kExcept,  ///< throw FormatError
  kWarn,    ///< log a warning and go on (default)
  kIgnore,  ///< go on silently
};

/// How far a save or read has come: called after each entry.
struct Progress {
  std::uint64_t bytes_done = 0;   ///< bytes of entries written or read so far
  std::uint64_t bytes_total = 0;  ///< bytes of all entries
  std::string entry;              ///< the entry just finished, e.g. "state_dict/fc1.weight.npy"
};
using ProgressCallback = std::function<void(const Progress&)>;

/// Options for writing a `.zanj` file. Defaults mirror Python ZANJ except compression.
struct SaveOptions {
  /// Tensors with at least this many elements go to external `.npy` entries (inclusive, as in
  /// Python). bfloat16, complex and empty tensors of 2+ dimensions always go external, because
  /// Python cannot read them inline.
  std::int64_t external_array_threshold = 256;
  /// Lists with at least this many items go to external `.jsonl` entries.
  std::int64_t external_list_threshold = 256;
  /// Encoding of inline tensors.
  ArrayMode array_mode = ArrayMode::kListMeta;
  /// Compression of every entry. NOTE: Python ZANJ deflates by default; we store, because
  /// tensor data barely compresses and stored entries are far faster to write and read.
  Compression compression = Compression::kStored;
  /// ISA-L deflate level for Compression::kDeflate, 0 (fastest) .. 3 (smallest). The default, 1,
  /// deflates tensor data at ~1 GB/s per core to about the size zlib's default level gives
  /// (README: "Compression"). Out of range: UsageError.
  int deflate_level = kDefaultDeflateLevel;
  /// Threads compressing deflated entries (0: one per core). The file does not depend on it.
  std::size_t threads = 0;
  /// Called after each entry is written (from the saving thread). Empty: no reports.
  ProgressCallback progress;
  /// JSON of the caller's, kept in the file: written to `__zanj_meta__.json` as
  /// `configured_model.user_metadata` (and to a distributed checkpoint's index as
  /// `user_metadata`) when not null; read back with read_metadata(). CheckpointManager puts each
  /// checkpoint's step and metrics here, so its index can be rebuilt from the checkpoints.
  nlohmann::ordered_json user_metadata;
};

/// Options for reading a `.zanj` file.
struct ConfigReport;  // configured_model/config.hpp

struct ReadOptions {
  ErrorMode error_mode = ErrorMode::kWarn;
  /// For models: when not null, receives what reading the stored config found (fields the
  /// Config lacks or that took their defaults, an upgrade from an older config version).
  ConfigReport* config_report = nullptr;
  /// For models: device to move the model to after loading (default: leave on CPU).
  std::optional<c10::Device> device;
  /// For models: floating-point dtype to convert floating parameters and buffers to.
  std::optional<c10::ScalarType> dtype;
  /// For models: refuse missing or unexpected state_dict keys (shape and dtype mismatches are
  /// always refused).
  bool strict = true;
  /// Map the file instead of reading it: tensors of stored, aligned, C-order, little-endian
  /// entries of the wanted dtype alias a copy-on-write mapping of the file (opening is
  /// near-instant and pages load on first touch; writing to a tensor copies that page privately,
  /// the file never changes). Other tensors are read as usual. Mapped data is NOT checked
  /// against its CRC-32: run zanj::verify() on files of unknown origin first. The file must not
  /// be truncated while mapped (that would raise SIGBUS on access).
  bool mmap = false;
  /// Check every tensor entry's CRC-32 while reading (summed slice by slice as the data arrives,
  /// about 0.3 ms per 10 MB with ISA-L's kernel; deflated entries are summed as they inflate).
  /// JSON entries are always checked.
  bool check_crc = true;
  /// Threads reading tensor data (0: one per core): deflated entries are inflated on them in
  /// parallel, each straight into its tensor, and a large stored entry is read in parts.
  std::size_t threads = 0;
  ArchiveLimits archive_limits;
  JsonLimits json_limits;
  /// Bytes a reader may spend on what a file describes beyond its tensors' own data: a pickle's
  /// objects, values a file shares by reference (which a tree repeats at each reference), views
  /// that overlap themselves (a zero stride: counted at the size they expand to). Generous for
  /// real checkpoints (a 100,000-tensor torch.save state dict uses about half); a small file that
  /// would expand past it is refused with a LimitError naming the file and the limit.
  std::uint64_t memory_budget = 512ULL << 20;
  /// Called after each entry is read (from the reading thread). Empty: no reports.
  ProgressCallback progress;
};

}  // namespace zanj

CONFIGURED_MODEL_API_END
