// SPDX-License-Identifier: MIT
// Saving a distributed checkpoint: the plan, each rank's file, and the commit over the process
// group that ends with rank 0 writing the index (see distributed.hpp).
#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "../storage/storage.hpp"
#include "checkpoint_index.hpp"
#include "collectives.hpp"
#include "configured_model/checksum.hpp"
#include "configured_model/distributed.hpp"
#include "configured_model/dtype.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/file.hpp"
#include "configured_model/json_text.hpp"
#include "configured_model/logging.hpp"
#include "save_plan.hpp"
#include "tree_layout.hpp"

namespace zanj {
using detail::Placement;

namespace {

std::string new_token() {
  std::random_device rd;
  const std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string rank_file_name(const std::string& token, int rank, int world_size) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "rank-%05d-of-%05d.", rank, world_size);
  return buf + token + ".zanj";
}

bool is_rank_file_name(const std::string& name) {
  return name.rfind("rank-", 0) == 0 && name.size() > 5 &&
         name.compare(name.size() - 5, 5, ".zanj") == 0;
}

std::uint64_t tensor_bytes(const at::Tensor& t) {
  return static_cast<std::uint64_t>(t.numel()) * t.element_size();
}

// What this rank knows of one tensor before the plan.
struct Local {
  Placement placement = Placement::kReplicated;
  std::vector<std::int64_t> global_shape;
  std::int64_t dim = -1;
  std::int64_t offset = 0;  // shards: where this rank's piece starts
};

std::vector<Local> classify(const std::vector<detail::FlatTensor>& flat,
                            const DistributedSaveOptions& options, const std::string& directory) {
  std::set<std::string> paths;
  for (const auto& f : flat) {
    if (!paths.insert(f.path).second && options.shards.count(f.path)) {
      throw ConfigError(directory + ": two tensors have the path '" + f.path +
                        "' (a key holds '/'), so a shard cannot name one of them");
    }
  }
  for (const auto& [path, shard] : options.shards) {
    if (!paths.count(path)) {
      throw ConfigError(directory + ": a shard is declared for '" + path +
                        "', but the tree has no tensor there");
    }
  }
  std::vector<Local> out(flat.size());
  for (std::size_t i = 0; i < flat.size(); ++i) {
    const auto& t = flat[i].tensor;
    const auto& path = flat[i].path;
    Local& l = out[i];
    l.global_shape = t.sizes().vec();
    bool per_rank = false;
    for (const auto& prefix : options.per_rank) per_rank |= detail::path_under(path, prefix);
    const auto shard = options.shards.find(path);
    if (per_rank) {
      l.placement = Placement::kPerRank;
    } else if (shard != options.shards.end()) {
      const Shard& s = shard->second;
      l.placement = Placement::kSharded;
      l.global_shape = s.global_shape;
      l.dim = s.dim;
      l.offset = s.offset;
      bool fits = s.global_shape.size() == static_cast<std::size_t>(t.dim()) && s.dim >= 0 &&
                  s.dim < t.dim() && s.offset >= 0;
      for (std::int64_t d = 0; fits && d < t.dim(); ++d) {
        const auto g = s.global_shape[static_cast<std::size_t>(d)];
        fits = d == s.dim ? s.offset + t.size(d) <= g : t.size(d) == g;
      }
      if (!fits) {
        throw ConfigError(
            directory + ": " + path + ": a piece of shape " + detail::shape_text(t.sizes()) +
            " at offset " + std::to_string(s.offset) + " along dim " + std::to_string(s.dim) +
            " does not fit the declared global shape " + detail::shape_text(s.global_shape));
      }
    } else {
      l.placement = Placement::kReplicated;
      l.dim = t.dim() == 0 ? -1 : 0;
    }
  }
  return out;
}

// The structure with every scalar replaced by its type: values may differ between ranks (a
// model's metadata holds a timestamp); rank 0's are saved.
nlohmann::ordered_json skeleton(const nlohmann::ordered_json& j) {
  if (j.is_object()) {
    auto out = nlohmann::ordered_json::object();
    for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = skeleton(it.value());
    return out;
  }
  if (j.is_array()) {
    auto out = nlohmann::ordered_json::array();
    for (const auto& v : j) out.push_back(skeleton(v));
    return out;
  }
  return j.is_number() ? "number" : j.type_name();
}

// What every rank must agree on: the structure (keys, nesting, kinds) and each tensor's path,
// placement, dtype and global shape.
std::string signature(const nlohmann::ordered_json& structure,
                      const std::vector<detail::FlatTensor>& flat,
                      const std::vector<Local>& local) {
  std::string s = dump_json(skeleton(structure), JsonStyle::kLine);
  for (std::size_t i = 0; i < flat.size(); ++i) {
    s += "\n" + flat[i].path + " " + detail::placement_name(local[i].placement) + " " +
         torch_dtype_name(flat[i].tensor.scalar_type()) + " " +
         detail::shape_text(local[i].global_shape) + " " + std::to_string(local[i].dim);
  }
  const std::uint32_t crc = crc32(0, s.data(), s.size());
  return std::to_string(s.size()) + ":" + std::to_string(crc);
}

// One rank's report after writing its file.
nlohmann::ordered_json report(bool ok, const std::string& error, const std::string& name,
                              std::uint64_t bytes, std::uint32_t crc,
                              const nlohmann::ordered_json& pieces) {
  return {{"ok", ok},       {"error", error}, {"name", name},
          {"bytes", bytes}, {"crc32", crc},   {"pieces", pieces}};
}

void remove_quietly(const std::string& path) {
  try {
    detail::storage_for(path).remove_all(path);
  } catch (const Error&) {  // NOLINT(bugprone-empty-catch): best effort, the save already failed
  }
}

}  // namespace

SaveHandle save_distributed_async(AsyncSaver& saver, const std::string& directory, const Node& root,
                                  c10d::ProcessGroup& group,
                                  const DistributedSaveOptions& options) {
  return saver.save_with(root, directory, [directory, &group, options](const Node& snapshot) {
    save_distributed(directory, snapshot, group, options);
  });
}

std::pair<std::int64_t, std::int64_t> even_split(std::int64_t size, int rank, int world_size) {
  if (world_size <= 0 || rank < 0 || rank >= world_size || size < 0) {
    throw UsageError("even_split: rank " + std::to_string(rank) + " of " +
                     std::to_string(world_size) + " (size " + std::to_string(size) + ")");
  }
  const std::int64_t chunk = (size + world_size - 1) / world_size;  // torch.chunk
  const std::int64_t begin = std::min(size, chunk * rank);
  return {begin, std::min(size, begin + chunk) - begin};
}

DistributedSaveResult save_distributed(const std::string& directory, const Node& root,
                                       c10d::ProcessGroup& group,
                                       const DistributedSaveOptions& options) {
  const int rank = group.getRank();
  const int world = group.getSize();

  std::vector<detail::FlatTensor> flat;
  const auto structure = detail::split_tree(root, flat);
  // A rank whose declarations are wrong says so in the exchange below, so that every rank
  // fails alike instead of the others waiting for it until the group's timeout.
  std::vector<Local> local;
  std::string local_error;
  try {
    local = classify(flat, options, directory);
  } catch (const ConfigError& e) {
    local_error = e.what();
  }

  // Every rank must save the same tree; rank 0 names the save.
  const auto token = detail::broadcast_bytes(group, 0, rank == 0 ? new_token() : "", "save token");
  const auto signatures = detail::allgather_bytes(
      group, local_error.empty() ? signature(structure, flat, local) : "error:" + local_error,
      "tree signature");
  for (int r = 0; r < world; ++r) {
    const auto& sig = signatures[static_cast<std::size_t>(r)];
    if (sig.rfind("error:", 0) == 0)
      throw ConfigError("rank " + std::to_string(r) + ": " + sig.substr(6));
  }
  std::string differ;
  for (int r = 1; r < world; ++r) {
    if (signatures[static_cast<std::size_t>(r)] != signatures[0]) differ += " " + std::to_string(r);
  }
  if (!differ.empty()) {
    throw ConfigError(directory + ": rank(s)" + differ +
                      " save a tree that differs from rank 0's (structure, paths, dtypes, "
                      "shapes or shard declarations); every rank must save the same tree");
  }

  // The plan: rows of replicated tensors spread evenly; shards and per-rank tensors by their
  // holders.
  std::vector<std::size_t> replicated;
  std::vector<detail::PlanItem> items;
  for (std::size_t i = 0; i < flat.size(); ++i) {
    if (local[i].placement != Placement::kReplicated) continue;
    const auto& t = flat[i].tensor;
    detail::PlanItem item;
    item.rows = t.dim() == 0 ? 1 : t.size(0);
    item.row_bytes = item.rows == 0 ? 0 : tensor_bytes(t) / static_cast<std::uint64_t>(item.rows);
    replicated.push_back(i);
    items.push_back(item);
  }
  const auto plan = detail::plan_pieces(items, world);

  // This rank's file: its pieces under "pieces/<n>".
  Node pieces = Node::dict();
  auto my_pieces = nlohmann::ordered_json::array();
  // What each piece is, in the rank file itself: a reader checks that the piece the index points
  // at is the one it means (a renumbered or swapped piece of the same dtype and shape is refused).
  auto piece_info = nlohmann::ordered_json::array();
  const auto add_piece = [&](std::size_t tensor, at::Tensor t, std::int64_t offset,
                             std::int64_t length) {
    const std::string key = std::to_string(pieces.size());
    my_pieces.push_back(
        {{"tensor", tensor}, {"index", pieces.size()}, {"offset", offset}, {"length", length}});
    piece_info.push_back({{"path", flat[tensor].path}, {"offset", offset}, {"length", length}});
    pieces[key] = t.is_contiguous() ? std::move(t) : t.contiguous();
  };
  for (const auto& p : plan) {
    if (p.rank != rank) continue;
    const std::size_t i = replicated[p.item];
    const auto& t = flat[i].tensor;
    if (t.dim() == 0)
      add_piece(i, t, 0, 0);
    else
      add_piece(i, t.narrow(0, p.offset, p.length), p.offset, p.length);
  }
  for (std::size_t i = 0; i < flat.size(); ++i) {
    if (local[i].placement == Placement::kSharded) {
      const auto& t = flat[i].tensor;
      if (t.size(local[i].dim) == 0) continue;  // this rank holds none of it
      add_piece(i, t, local[i].offset, t.size(local[i].dim));
    } else if (local[i].placement == Placement::kPerRank) {
      add_piece(i, flat[i].tensor, 0, 0);
    }
  }

  Node file_root = Node::dict();
  file_root["format"] = nlohmann::json(detail::kRankFormat);
  file_root["token"] = nlohmann::json(token);
  file_root["rank"] = nlohmann::json(rank);
  file_root["world_size"] = nlohmann::json(world);
  file_root["pieces"] = std::move(pieces);
  file_root["piece_info"] = piece_info;

  const std::string name = rank_file_name(token, rank, world);
  const std::string path = detail::join_path(directory, name);
  bool ok = true;
  std::string error;
  std::uint64_t bytes = 0;
  std::uint32_t crc = 0;
  try {
    detail::storage_for(directory).create_directories(directory);
    save(file_root, path, options.save);  // temporary, fsync, rename, directory fsync
    std::tie(bytes, crc) = detail::file_crc(path);
  } catch (const std::exception& e) {
    ok = false;
    error = e.what();
    remove_quietly(path);
  }

  // Commit: gather every rank's result; rank 0 writes the index only if all succeeded.
  std::vector<std::string> reports;
  try {
    reports = detail::allgather_bytes(group, report(ok, error, name, bytes, crc, my_pieces).dump(),
                                      "gathering save results");
  } catch (...) {
    remove_quietly(path);
    throw;
  }
  std::string outcome;  // empty: committed
  DistributedSaveResult result;
  result.directory = directory;
  if (rank == 0) {
    try {
      std::vector<nlohmann::json> parsed;
      for (int r = 0; r < world; ++r) {
        parsed.push_back(nlohmann::json::parse(reports[static_cast<std::size_t>(r)]));
        if (!parsed.back()["ok"].get<bool>()) {
          outcome += (outcome.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) +
                     ": " + parsed.back()["error"].get<std::string>();
        }
      }
      if (outcome.empty()) {
        detail::Index index;
        index.token = token;
        index.world_size = world;
        index.tree = structure;
        index.user_metadata = options.save.user_metadata;
        for (std::size_t i = 0; i < flat.size(); ++i) {
          detail::IndexTensor t;
          t.path = flat[i].path;
          t.placement = local[i].placement;
          t.dtype = flat[i].tensor.scalar_type();
          t.shape = local[i].global_shape;
          t.dim = local[i].placement == Placement::kPerRank ? -1 : local[i].dim;
          index.tensors.push_back(std::move(t));
        }
        for (int r = 0; r < world; ++r) {
          const auto& rep = parsed[static_cast<std::size_t>(r)];
          index.files.push_back({rep["name"].get<std::string>(), rep["bytes"].get<std::uint64_t>(),
                                 rep["crc32"].get<std::uint32_t>()});
          for (const auto& p : rep["pieces"]) {
            auto& t = index.tensors.at(p["tensor"].get<std::size_t>());
            t.pieces.push_back({r, p["index"].get<std::uint64_t>(), p["offset"].get<std::int64_t>(),
                                p["length"].get<std::int64_t>()});
          }
        }
        for (const auto& t : index.tensors) {
          const bool empty =
              std::any_of(t.shape.begin(), t.shape.end(), [](auto s) { return s == 0; });
          if (t.placement == Placement::kSharded && !empty) {
            try {
              detail::check_tiling(t, directory);
            } catch (const FormatError& e) {
              throw ConfigError(std::string("the declared shards do not fit together: ") +
                                e.what());
            }
          }
        }
        const std::string index_path = detail::join_path(directory, kDistributedIndex);
        detail::storage_for(index_path)
            .write_atomically(index_path, dump_json(detail::index_to_json(index),
                                                    JsonStyle::kIndented));  // the commit
        // The previous save's files are no longer named by the index.
        std::set<std::string> keep;
        for (const auto& f : index.files) keep.insert(f.name);
        for (const auto& entry : detail::storage_for(directory).list(directory)) {
          const std::string& n = entry.name;
          if (!entry.directory && is_rank_file_name(n) && !keep.count(n)) {
            remove_quietly(detail::join_path(directory, n));
          }
        }
      }
    } catch (const std::exception& e) {
      outcome = std::string("rank 0 could not commit: ") + e.what();
    }
    if (!outcome.empty()) {  // remove what this save wrote, whoever wrote it
      for (int r = 0; r < world; ++r)
        remove_quietly(detail::join_path(directory, rank_file_name(token, r, world)));
    }
    // Temporaries of ranks killed while writing (this save's or an earlier one's).
    detail::storage_for(directory).remove_stale_temporaries(directory,
                                                            {"rank-", kDistributedIndex});
  }
  outcome = detail::broadcast_bytes(group, 0, outcome, "the commit's outcome");
  if (!outcome.empty()) {
    remove_quietly(path);
    throw IoError(directory +
                  ": distributed save failed, the previous checkpoint stays: " + outcome);
  }
  for (const auto& rep : reports) {
    result.bytes_per_rank.push_back(nlohmann::json::parse(rep)["bytes"].get<std::uint64_t>());
  }
  for (std::size_t i = 0; i < flat.size(); ++i) {
    std::uint64_t b = static_cast<std::uint64_t>(flat[i].tensor.element_size());
    for (auto s : local[i].global_shape) b *= static_cast<std::uint64_t>(s);
    result.tensor_bytes += b;
  }
  logger()->info("saved distributed checkpoint {} (rank {} of {}, {} bytes)", directory, rank,
                 world, bytes);
  return result;
}

}  // namespace zanj
