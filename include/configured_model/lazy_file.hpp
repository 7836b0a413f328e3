// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "configured_model/archive.hpp"
#include "configured_model/export.hpp"
#include "configured_model/file.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// A tensor of a file as its JSON describes it, before it is read.
struct TensorInfo {
  std::string key;                  ///< tree path, keys joined by '/': "state_dict/fc1.weight"
  std::vector<std::int64_t> shape;  ///< as stored
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::uint64_t bytes = 0;  ///< bytes of data (elements × item size)
  std::string entry;        ///< the archive entry holding it; empty when inline
};

/// A `.zanj` file opened without reading its tensors: only the zip's central directory and the
/// two JSON entries are read, and they are only indexed (simdjson), not built into documents,
/// so that opening a checkpoint of 10,000 tensors takes milliseconds. Tensors are listed with
/// shape, dtype and size, and read one at a time by key, reading only that entry's bytes (or
/// mapping them, with ReadOptions::mmap).
///
/// \code
///   auto file = zanj::LazyFile::open("big.zanj");
///   for (const auto& t : file.tensors()) std::cout << t.key << " " << t.bytes << "\n";
///   torch::Tensor w = file.tensor("state_dict/fc1.weight");
/// \endcode
///
/// Tensors inside external `.jsonl` lists are not listed (reading the list reads them). Like
/// ArchiveReader, a LazyFile is not thread-safe: open one per thread.
class LazyFile {
 public:
  /// @throws IoError, FormatError, VersionError as zanj::read() does.
  static LazyFile open(const std::string& path, const ReadOptions& options = {});
  /// The same for an archive already opened (e.g. from memory).
  static LazyFile open(ArchiveReader archive, const ReadOptions& options = {});

  /// Every tensor of the tree, in tree order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  /// The tensor stored at `key`, or nullptr.
  const TensorInfo* find(const std::string& key) const;

  /// Reads the tensor stored at `key` (checking its CRC-32 unless ReadOptions says otherwise).
  /// @throws FormatError if there is none or its data is bad.
  at::Tensor tensor(const std::string& key) const;

  /// Reads the whole tree, as zanj::read() does.
  Node read() const;

  /// The two JSON entries as documents (parsed on first call when open() did not need them).
  const Document& document() const;
  const ArchiveReader& archive() const { return archive_; }

 private:
  LazyFile(ArchiveReader archive, ReadOptions options);
  bool open_indexed();  // the fast path: false when the file needs the full documents
  void open_documents();

  // What the fast path keeps of a tensor item to rebuild it without the document.
  struct Item {
    std::string tag, dtype;
  };

  ArchiveReader archive_;
  ReadOptions options_;
  mutable Document document_;
  mutable bool have_document_ = false;
  std::vector<TensorInfo> tensors_;
  std::vector<nlohmann::ordered_json::json_pointer> pointers_;  // parallel to tensors_ (full)
  std::vector<Item> items_;                                     // parallel to tensors_ (fast)
  std::unordered_map<std::string, bool> listed_;        // externals_info's entries (fast path)
  std::unordered_map<std::string, std::size_t> index_;  // key -> position
};

}  // namespace zanj

CONFIGURED_MODEL_API_END
