// SPDX-License-Identifier: MIT
// Reading a distributed checkpoint at any world size, consolidating it into one file, and
// verifying it (see distributed.hpp). Every rank file is opened lazily: only the pieces a rank
// needs are read.
#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>

#include "../storage/storage.hpp"
#include "checkpoint_index.hpp"
#include "collectives.hpp"
#include "configured_model/checksum.hpp"
#include "configured_model/distributed.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/file.hpp"
#include "configured_model/lazy_file.hpp"
#include "configured_model/logging.hpp"
#include "configured_model/verify.hpp"
#include "tree_layout.hpp"

namespace zanj {
using detail::IndexPiece;
using detail::IndexTensor;
using detail::Placement;

namespace {

std::vector<std::int64_t> piece_shape(const IndexTensor& t, const IndexPiece& p) {
  auto shape = t.shape;
  if (t.dim >= 0) shape[static_cast<std::size_t>(t.dim)] = p.length;
  return shape;
}

class Reader {
 public:
  Reader(std::string directory, const ReadOptions& options)
      : directory_(std::move(directory)),
        options_(options),
        index_(detail::load_index(directory_)) {}

  const detail::Index& index() const { return index_; }

  std::string file_path(int rank) const {
    return directory_ + "/" + index_.files[static_cast<std::size_t>(rank)].name;
  }

  // Rank `rank`'s file, opened (and checked against the index) on first use.
  const LazyFile& file(int rank) {
    auto& slot = files_[rank];
    if (slot) return *slot;
    const std::string path = file_path(rank);
    const std::string who =
        "rank " + std::to_string(rank) + " of " + std::to_string(index_.world_size);
    std::uint64_t size = 0;
    try {
      size = detail::storage_for(path).open(path)->size();
    } catch (const IoError& e) {
      throw IoError(detail::message(
          path, "", who + ": the file the index names is missing (" + e.what() + ")"));
    }
    const auto expected = index_.files[static_cast<std::size_t>(rank)].bytes;
    if (size != expected) {
      detail::throw_format_error(path, "",
                                 who + ": the index says " + std::to_string(expected) +
                                     " bytes, the file has " + std::to_string(size) +
                                     " (truncated or replaced)");
    }
    LazyFile lazy = [&] {
      try {
        return LazyFile::open(path, options_);
      } catch (const FormatError& e) {
        throw FormatError(who + ": " + e.what());
      }
    }();
    const auto& root = lazy.document().tree;
    const auto field = [&](const char* key) {
      return root.is_object() && root.contains(key) ? root[key] : nlohmann::ordered_json();
    };
    if (field("format") != detail::kRankFormat || field("token") != index_.token ||
        field("rank") != rank || field("world_size") != index_.world_size) {
      detail::throw_format_error(path, "",
                                 who + ": not this checkpoint's file (expected format '" +
                                     detail::kRankFormat + "', token " + index_.token + ", rank " +
                                     std::to_string(rank) + "; found format " +
                                     field("format").dump() + ", token " + field("token").dump() +
                                     ", rank " + field("rank").dump() + ")");
    }
    slot = std::make_unique<LazyFile>(std::move(lazy));
    return *slot;
  }

  // Checks a piece against the file without reading its data; returns its key.
  std::string check_piece(const IndexTensor& t, const IndexPiece& p) {
    const auto& f = file(p.rank);
    const std::string key = "pieces/" + std::to_string(p.index);
    const TensorInfo* info = f.find(key);
    const auto shape = piece_shape(t, p);
    if (!info || info->dtype != t.dtype || info->shape != shape) {
      detail::throw_format_error(
          file_path(p.rank), key,
          "rank " + std::to_string(p.rank) + ": the index expects a piece of '" + t.path + "' (" +
              c10::toString(t.dtype) + " " + detail::shape_text(shape) + "), the file holds " +
              (info
                   ? std::string(c10::toString(info->dtype)) + " " + detail::shape_text(info->shape)
                   : std::string("nothing")));
    }
    if (index_.version >= 2) check_piece_info(t, p, f, key);
    return key;
  }

  // Version 2: the rank file says which tensor and which rows each piece holds.
  void check_piece_info(const IndexTensor& t, const IndexPiece& p, const LazyFile& f,
                        const std::string& key) {
    const auto& root = f.document().tree;
    const nlohmann::ordered_json* info = nullptr;
    if (root.is_object() && root.contains("piece_info") && root["piece_info"].is_array() &&
        p.index < root["piece_info"].size()) {
      info = &root["piece_info"][p.index];
    }
    const nlohmann::ordered_json expected = {
        {"path", t.path}, {"offset", p.offset}, {"length", p.length}};
    if (!info || *info != expected) {
      detail::throw_format_error(
          file_path(p.rank), key,
          "rank " + std::to_string(p.rank) + ": the index expects this piece to be " +
              expected.dump() + ", the file records " +
              (info ? info->dump() : std::string("no piece_info for it")) +
              " (the index or the file was edited, or they belong to different saves)");
    }
  }

  at::Tensor read_piece(const IndexTensor& t, const IndexPiece& p) {
    const std::string key = check_piece(t, p);
    return file(p.rank).tensor(key);
  }

  // Rows [begin, begin + length) along t.dim (or the whole tensor when t.dim < 0).
  at::Tensor read(const IndexTensor& t, int rank,
                  std::optional<DistributedReadOptions::Piece> want) {
    const auto options = at::TensorOptions().dtype(t.dtype);
    if (t.dim < 0) {  // whole pieces: this rank's own copy, else rank 0's (or the first)
      if (t.pieces.empty()) return at::empty(t.shape, options);
      const IndexPiece* chosen = &t.pieces.front();
      for (const auto& p : t.pieces) {
        if (p.rank == rank) chosen = &p;
      }
      if (want) {
        throw UsageError(directory_ + ": '" + t.path + "' was saved whole; it has no dim to cut");
      }
      return read_piece(t, *chosen);
    }
    const std::int64_t dim = want ? want->dim : t.dim;
    if (dim != t.dim) {
      throw UsageError(directory_ + ": '" + t.path + "' was saved in pieces along dim " +
                       std::to_string(t.dim) + "; a piece along dim " + std::to_string(dim) +
                       " was asked for");
    }
    const std::int64_t size = t.shape[static_cast<std::size_t>(t.dim)];
    const std::int64_t begin = want ? want->offset : 0;
    const std::int64_t length = want ? want->length : size;
    if (begin < 0 || length < 0 || begin > size || length > size - begin) {
      throw UsageError(directory_ + ": '" + t.path + "': rows [" + std::to_string(begin) + ", +" +
                       std::to_string(length) + ") asked for, the tensor has " +
                       std::to_string(size) + " along dim " + std::to_string(t.dim));
    }
    // Check every needed piece against its file before allocating.
    std::vector<const IndexPiece*> needed;
    for (const auto& p : t.pieces) {
      if (p.offset < begin + length && p.offset + p.length > begin) {
        check_piece(t, p);
        needed.push_back(&p);
      }
    }
    auto shape = t.shape;
    shape[static_cast<std::size_t>(t.dim)] = length;
    if (needed.size() == 1 && needed[0]->offset == begin && needed[0]->length == length) {
      return read_piece(t, *needed[0]);  // no copy
    }
    at::Tensor out = at::empty(shape, options);
    for (const IndexPiece* p : needed) {
      const at::Tensor piece = read_piece(t, *p);
      const std::int64_t lo = std::max(begin, p->offset);
      const std::int64_t hi = std::min(begin + length, p->offset + p->length);
      out.narrow(t.dim, lo - begin, hi - lo).copy_(piece.narrow(t.dim, lo - p->offset, hi - lo));
    }
    return out;
  }

 private:
  std::string directory_;
  ReadOptions options_;
  detail::Index index_;
  std::map<int, std::unique_ptr<LazyFile>> files_;
};

Node read_with(const std::string& directory, int rank, int world_size,
               const DistributedReadOptions& options, c10d::ProcessGroup* group) {
  if (world_size <= 0 || rank < 0 || rank >= world_size) {
    throw UsageError(directory + ": rank " + std::to_string(rank) + " of " +
                     std::to_string(world_size));
  }
  Reader reader(directory, options.read);
  const auto& index = reader.index();
  for (const auto& asked : options.pieces) {
    const std::string& path = asked.first;
    bool found = false;
    for (const auto& t : index.tensors) found |= t.path == path;
    if (!found)
      throw UsageError(directory + ": a piece of '" + path +
                       "' was asked for; the checkpoint has no such tensor");
  }
  std::vector<at::Tensor> tensors;
  tensors.reserve(index.tensors.size());
  for (const auto& t : index.tensors) {
    std::optional<DistributedReadOptions::Piece> want;
    if (const auto it = options.pieces.find(t.path); it != options.pieces.end()) want = it->second;
    if (group && options.broadcast_replicated && t.placement == Placement::kReplicated && !want) {
      // Rank 0 reads, everyone receives; a failure on rank 0 reaches every rank.
      at::Tensor value;
      std::string failure;
      if (rank == 0) {
        try {
          value = reader.read(t, rank, want).contiguous();
        } catch (const Error& e) {
          failure = e.what();
        }
      }
      failure = detail::broadcast_bytes(*group, 0, failure, "reading a replicated tensor");
      if (!failure.empty()) throw FormatError("rank 0 could not read '" + t.path + "': " + failure);
      if (rank != 0) value = at::empty(t.shape, at::TensorOptions().dtype(t.dtype));
      detail::broadcast_tensor(*group, 0, value, "broadcasting a replicated tensor");
      tensors.push_back(std::move(value));
    } else {
      tensors.push_back(reader.read(t, rank, want));
    }
  }
  return detail::join_tree(index.tree, tensors, index.path);
}

}  // namespace

Node read_distributed(const std::string& directory, int rank, int world_size,
                      const DistributedReadOptions& options) {
  return read_with(directory, rank, world_size, options, nullptr);
}

Node read_distributed(const std::string& directory, c10d::ProcessGroup& group,
                      const DistributedReadOptions& options) {
  return read_with(directory, group.getRank(), group.getSize(), options, &group);
}

void consolidate(const std::string& directory, const std::string& out, const SaveOptions& options) {
  save(read_distributed(directory, 0, 1), out, options);
  logger()->info("consolidated distributed checkpoint {} into {}", directory, out);
}

bool is_distributed_checkpoint(const std::string& directory) {
  const std::string index = detail::join_path(directory, kDistributedIndex);
  return detail::storage_for(index).is_file(index);
}

DistributedCheckpointInfo inspect_distributed(const std::string& directory) {
  const auto index = detail::load_index(directory);
  DistributedCheckpointInfo info;
  info.world_size = index.world_size;
  for (const auto& f : index.files) {
    info.files.push_back(f.name);
    info.file_bytes.push_back(f.bytes);
  }
  for (const auto& t : index.tensors) {
    DistributedTensorInfo ti;
    ti.path = t.path;
    ti.shape = t.shape;
    ti.dtype = t.dtype;
    ti.placement = detail::placement_name(t.placement);
    ti.pieces = t.pieces.size();
    ti.bytes = c10::elementSize(t.dtype);
    for (auto s : t.shape) ti.bytes *= static_cast<std::uint64_t>(s);
    info.tensors.push_back(std::move(ti));
  }
  return info;
}

void verify_distributed(const std::string& directory) {
  Reader reader(directory, {});
  const auto& index = reader.index();
  for (int r = 0; r < index.world_size; ++r) {
    reader.file(r);  // present, size, written by this save
    const std::string path = reader.file_path(r);
    const auto report = verify(path);
    if (!report.ok) {
      detail::throw_format_error(path, "",
                                 "rank " + std::to_string(r) + ": " + report.problems.front());
    }
    const std::uint32_t crc = detail::file_crc(path).second;
    const auto expected = index.files[static_cast<std::size_t>(r)].crc32;
    if (crc != expected) {
      detail::throw_format_error(path, "",
                                 "rank " + std::to_string(r) + ": CRC-32 " + std::to_string(crc) +
                                     ", the index says " + std::to_string(expected));
    }
  }
  for (const auto& t : index.tensors) {
    for (const auto& p : t.pieces) reader.check_piece(t, p);
  }
}

}  // namespace zanj
