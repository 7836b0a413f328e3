// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/state_dict.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Limits checked before anything is allocated from a safetensors header.
struct SafetensorsLimits {
  std::uint64_t max_header_bytes = 100ULL << 20;  ///< the reference implementation's cap
  std::size_t max_shards = 100'000;               ///< shards one index may name
};

/// One tensor of a safetensors file, as its header describes it.
struct SafetensorsTensor {
  std::string key;
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::vector<std::int64_t> shape;
  std::string file;          ///< the file holding it (a shard, for an index)
  std::uint64_t offset = 0;  ///< where its bytes start in that file
  std::uint64_t bytes = 0;
};

/// A `.safetensors` file, or a Hugging Face sharded checkpoint (`*.safetensors.index.json`
/// naming shards in its folder) read as one. Opening reads and checks the header(s) only: size
/// cap, JSON, dtypes, every tensor's bytes = dtype size x shape, offsets inside the data and
/// tiling it without holes or overlaps; shards against the index. Tensors are then read one by
/// one: tensor() aliases a copy-on-write mapping of the file (zero-copy; writing to the tensor
/// never reaches the file), read_tensor() copies with pread. Thread-safe after open.
///
/// \code
///   auto st = zanj::SafetensorsFile::open("model.safetensors.index.json");
///   for (const auto& t : st.tensors()) std::cout << t.key << "\n";
///   torch::Tensor w = st.tensor("lm_head.weight");
/// \endcode
class SafetensorsFile {
 public:
  /// @throws IoError if a file cannot be read; FormatError naming the file and key otherwise.
  static SafetensorsFile open(const std::string& path, const SafetensorsLimits& limits = {});
  /// A safetensors file held in memory; `display_name` names it in messages.
  static SafetensorsFile from_bytes(std::string bytes, std::string display_name,
                                    const SafetensorsLimits& limits = {});

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  /// Every tensor, in the order of their data (index order across shards).
  const std::vector<SafetensorsTensor>& tensors() const;
  /// The tensor called `key`, or nullptr.
  const SafetensorsTensor* find(const std::string& key) const;
  /// `__metadata__` (string to string); for an index, its shards' merged with the index's own
  /// `metadata` (numbers written as text).
  const std::map<std::string, std::string>& metadata() const;

  /// The tensor aliasing the mapped file (copied only when its bytes are misaligned for its
  /// dtype).  @throws FormatError if `key` is absent.
  at::Tensor tensor(const std::string& key) const;
  /// The tensor read into fresh memory.
  at::Tensor read_tensor(const std::string& key) const;
  /// Every tensor as a dict Node (keys in tensors() order), mapped or copied.
  Node read_all(bool mmap = true) const;
  /// The path given to open().
  const std::string& name() const;

 private:
  struct Impl;
  explicit SafetensorsFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Writes named tensors as one `.safetensors` file (header padded to 8 bytes, tensors in the
/// given order, little-endian, C order) crash-safely; `metadata` goes to `__metadata__`.
/// @throws FormatError for a dtype safetensors cannot name or a repeated key; IoError.
void save_safetensors(const StateDict& tensors, const std::string& path,
                      const std::map<std::string, std::string>& metadata = {});

/// The same bytes as a string (for streams and tests).
std::string safetensors_bytes(const StateDict& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace zanj

CONFIGURED_MODEL_API_END
