// SPDX-License-Identifier: MIT
// The index of a distributed checkpoint (checkpoint.json): which rank files belong to it, where
// each tensor's pieces are, and the tree's structure. Written last, by rank 0; read without
// trusting it.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zanj::detail {

inline constexpr const char* kIndexFormat = "configured_model/distributed-checkpoint";
inline constexpr const char* kRankFormat = "configured_model/distributed-rank";
/// 2: the index carries `index_crc32` (CRC-32 of its own text without that field) and each rank
/// file lists, per piece, the tensor path and place it holds (`piece_info`). Version 1 indexes
/// (neither) are still read.
inline constexpr int kIndexVersion = 2;
inline constexpr const char* kIndexChecksumKey = "index_crc32";

/// How a tensor was saved.
enum class Placement {
  kReplicated,  ///< the same on every rank; its rows spread over the ranks' files
  kSharded,     ///< each rank held a piece along `dim`
  kPerRank,     ///< different on every rank (RNG states): one whole copy per rank
};

struct IndexFile {
  std::string name;  ///< a plain file name in the checkpoint's directory
  std::uint64_t bytes = 0;
  std::uint32_t crc32 = 0;
};

struct IndexPiece {
  int rank = 0;
  std::uint64_t index = 0;  ///< the piece's key in that rank's file: pieces/<index>
  std::int64_t offset = 0;  ///< along `dim` (0 for whole pieces)
  std::int64_t length = 0;  ///< along `dim` (for whole pieces: 0)
};

struct IndexTensor {
  std::string path;
  Placement placement = Placement::kReplicated;
  c10::ScalarType dtype = c10::kFloat;
  std::vector<std::int64_t> shape;
  std::int64_t dim = -1;  ///< -1: every piece is the whole tensor
  std::vector<IndexPiece> pieces;
};

struct Index {
  std::string path;                      ///< of checkpoint.json
  int version = kIndexVersion;           ///< as read (1 lacks the self-checks of 2)
  nlohmann::ordered_json user_metadata;  ///< SaveOptions::user_metadata (null: none)
  std::string token;
  int world_size = 1;
  std::vector<IndexFile> files;  ///< one per rank, in rank order
  std::vector<IndexTensor> tensors;
  nlohmann::ordered_json tree;  ///< structure with tensor placeholders
};

const char* placement_name(Placement p);

/// The index as JSON, ending with its own checksum (the caller writes it crash-safely with
/// dump_json(..., JsonStyle::kIndented), the text the checksum is of).
nlohmann::ordered_json index_to_json(const Index& index);

/// Reads and checks `directory`/checkpoint.json: fields and types, file names (plain names, one
/// per rank), pieces (ranks in range, pieces along `dim` tiling the tensor exactly).
/// @throws IoError when it cannot be read; FormatError naming the index and the field.
Index load_index(const std::string& directory);

/// The same for the index's text (`file` names it in errors).
Index parse_index(std::string_view text, const std::string& file);

/// Size and CRC-32 of a whole file (what the index records of each rank file).
/// @throws IoError.
std::pair<std::uint64_t, std::uint32_t> file_crc(const std::string& path);

/// The pieces of `t` along its dim, checked to tile [0, shape[dim]) exactly.
/// @throws FormatError naming `file` otherwise.
void check_tiling(const IndexTensor& t, const std::string& file);

}  // namespace zanj::detail
