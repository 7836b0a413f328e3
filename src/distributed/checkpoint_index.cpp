// SPDX-License-Identifier: MIT
#include "checkpoint_index.hpp"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "../storage/storage.hpp"
#include "configured_model/checksum.hpp"
#include "configured_model/distributed.hpp"
#include "configured_model/dtype.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/json_text.hpp"

namespace zanj::detail {
namespace {

constexpr int kMaxWorldSize = 1 << 20;

struct Checker {
  const std::string& file;

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw_format_error(file, where, what);
  }
  const nlohmann::ordered_json& field(const nlohmann::ordered_json& j, const char* key,
                                      const std::string& where) const {
    if (!j.is_object() || !j.contains(key)) fail(where, std::string("missing field '") + key + "'");
    return j[key];
  }
  std::string str(const nlohmann::ordered_json& j, const char* key,
                  const std::string& where) const {
    const auto& v = field(j, key, where);
    if (!v.is_string()) fail(where + "/" + key, "expected a string, found " + v.dump());
    return v.get<std::string>();
  }
  std::int64_t integer(const nlohmann::ordered_json& j, const char* key, const std::string& where,
                       std::int64_t lo, std::int64_t hi) const {
    const auto& v = field(j, key, where);
    if (!v.is_number_integer()) fail(where + "/" + key, "expected an integer, found " + v.dump());
    const auto x = v.get<std::int64_t>();
    if (x < lo || x > hi) {
      fail(where + "/" + key, "expected " + std::to_string(lo) + ".." + std::to_string(hi) +
                                  ", found " + std::to_string(x));
    }
    return x;
  }
};

}  // namespace

// Size and CRC-32 of a whole file.
std::pair<std::uint64_t, std::uint32_t> file_crc(const std::string& path) {
  const auto file = storage_for(path).open(path);
  std::vector<char> buf(8 << 20);
  std::uint32_t crc = 0;
  const std::uint64_t size = file->size();
  for (std::uint64_t at = 0; at < size;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - at));
    file->read_at(at, buf.data(), n);
    crc = crc32(crc, buf.data(), n);
    at += n;
  }
  return {size, crc};
}

const char* placement_name(Placement p) {
  switch (p) {
    case Placement::kReplicated:
      return "replicated";
    case Placement::kSharded:
      return "sharded";
    case Placement::kPerRank:
      return "per_rank";
  }
  return "?";
}

nlohmann::ordered_json index_to_json(const Index& index) {
  nlohmann::ordered_json j;
  j["format"] = kIndexFormat;
  j["version"] = kIndexVersion;
  j["token"] = index.token;
  j["world_size"] = index.world_size;
  auto files = nlohmann::ordered_json::array();
  for (std::size_t r = 0; r < index.files.size(); ++r) {
    files.push_back({{"rank", r},
                     {"name", index.files[r].name},
                     {"bytes", index.files[r].bytes},
                     {"crc32", index.files[r].crc32}});
  }
  j["files"] = std::move(files);
  auto tensors = nlohmann::ordered_json::array();
  for (const auto& t : index.tensors) {
    auto pieces = nlohmann::ordered_json::array();
    for (const auto& p : t.pieces) {
      pieces.push_back(
          {{"rank", p.rank}, {"index", p.index}, {"offset", p.offset}, {"length", p.length}});
    }
    tensors.push_back({{"path", t.path},
                       {"placement", placement_name(t.placement)},
                       {"dtype", torch_dtype_name(t.dtype)},
                       {"shape", t.shape},
                       {"dim", t.dim},
                       {"pieces", std::move(pieces)}});
  }
  j["tensors"] = std::move(tensors);
  j["tree"] = index.tree;
  if (!index.user_metadata.is_null()) j["user_metadata"] = index.user_metadata;
  // Last: the CRC-32 of the text above it, so that an edit anywhere (a piece's rank, a file's
  // size) is found before the index is trusted.
  const std::string text = dump_json(j, JsonStyle::kIndented);
  j[kIndexChecksumKey] = crc32(0, text.data(), text.size());
  return j;
}

void check_tiling(const IndexTensor& t, const std::string& file) {
  const std::string where = "tensors/" + t.path;
  if (t.dim < 0) {
    if (t.pieces.empty()) throw_format_error(file, where, "no piece holds this tensor");
    return;
  }
  std::vector<const IndexPiece*> sorted;
  for (const auto& p : t.pieces) sorted.push_back(&p);
  std::sort(sorted.begin(), sorted.end(),
            [](const IndexPiece* a, const IndexPiece* b) { return a->offset < b->offset; });
  std::int64_t next = 0;
  for (const auto* p : sorted) {
    if (p->offset != next || p->length <= 0) {
      throw_format_error(file, where,
                         "pieces do not tile dim " + std::to_string(t.dim) + ": expected one at " +
                             std::to_string(next) + ", found [" + std::to_string(p->offset) +
                             ", +" + std::to_string(p->length) + ")");
    }
    if (__builtin_add_overflow(next, p->length, &next)) {  // hostile lengths: no wrap-around
      throw_format_error(file, where,
                         "piece lengths along dim " + std::to_string(t.dim) +
                             " overflow a 64-bit sum (at the piece at " +
                             std::to_string(p->offset) + ")");
    }
  }
  const std::int64_t size = t.shape[static_cast<std::size_t>(t.dim)];
  if (next != size) {
    throw_format_error(file, where,
                       "pieces cover " + std::to_string(next) + " of " + std::to_string(size) +
                           " along dim " + std::to_string(t.dim));
  }
}

Index load_index(const std::string& directory) {
  Index index;
  index.path = join_path(directory, kDistributedIndex);
  const std::string& file = index.path;
  const Storage& storage = storage_for(file);
  if (!storage.is_file(file)) {
    throw IoError(file +
                  ": no such file (not a distributed checkpoint, or one that never committed)");
  }
  const auto in = storage.open(file);
  JsonLimits limits;
  if (in->size() > limits.max_bytes) {
    throw_format_error(file, "",
                       std::to_string(in->size()) + " bytes, longer than the limit of " +
                           std::to_string(limits.max_bytes));
  }
  std::string text(static_cast<std::size_t>(in->size()), '\0');
  in->read_at(0, text.data(), text.size());
  return parse_index(text, index.path);
}

Index parse_index(std::string_view text, const std::string& file) {
  Index index;
  index.path = file;
  JsonLimits limits;
  const auto j = parse_json(text, file, "", limits);
  const Checker c{file};

  if (c.str(j, "format", "") != kIndexFormat) {
    c.fail("format", std::string("expected '") + kIndexFormat + "', found '" +
                         j["format"].get<std::string>() + "'");
  }
  const auto version = c.integer(j, "version", "", 0, 1 << 30);
  if (version != 1 && version != kIndexVersion) {
    throw VersionError(message(file, "version",
                               "written by format version " + std::to_string(version) +
                                   "; this library reads 1 and " + std::to_string(kIndexVersion)));
  }
  index.version = static_cast<int>(version);
  if (version >= 2) {
    const auto stored = c.integer(j, kIndexChecksumKey, "", 0, 0xffffffffLL);
    if (j.back() != j[kIndexChecksumKey]) {
      c.fail(kIndexChecksumKey,
             "expected as the last field (the checksum covers what precedes it)");
    }
    nlohmann::ordered_json body = j;
    body.erase(kIndexChecksumKey);
    const std::string canonical = dump_json(body, JsonStyle::kIndented);
    const std::uint32_t actual = crc32(0, canonical.data(), canonical.size());
    if (actual != static_cast<std::uint32_t>(stored)) {
      c.fail(kIndexChecksumKey, "the index was changed after it was written (CRC-32 " +
                                    std::to_string(actual) + ", recorded " +
                                    std::to_string(stored) + ")");
    }
  }
  index.token = c.str(j, "token", "");
  index.world_size = static_cast<int>(c.integer(j, "world_size", "", 1, kMaxWorldSize));

  const auto& files = c.field(j, "files", "");
  if (!files.is_array() || files.size() != static_cast<std::size_t>(index.world_size)) {
    c.fail("files", "expected one file per rank (" + std::to_string(index.world_size) + ")");
  }
  for (std::size_t r = 0; r < files.size(); ++r) {
    const std::string where = "files/" + std::to_string(r);
    if (c.integer(files[r], "rank", where, 0, kMaxWorldSize) != static_cast<std::int64_t>(r)) {
      c.fail(where + "/rank", "expected " + std::to_string(r));
    }
    IndexFile f;
    f.name = c.str(files[r], "name", where);
    if (f.name.empty() || f.name.find('/') != std::string::npos || f.name == "." ||
        f.name == ".." || f.name.find('\0') != std::string::npos) {
      c.fail(where + "/name", "'" + f.name + "' is not a plain file name");
    }
    f.bytes = static_cast<std::uint64_t>(c.integer(files[r], "bytes", where, 0, INT64_MAX));
    f.crc32 = static_cast<std::uint32_t>(c.integer(files[r], "crc32", where, 0, 0xffffffffLL));
    index.files.push_back(std::move(f));
  }

  const auto& tensors = c.field(j, "tensors", "");
  if (!tensors.is_array()) c.fail("tensors", "expected a list");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string where = "tensors/" + std::to_string(i);
    const auto& tj = tensors[i];
    IndexTensor t;
    t.path = c.str(tj, "path", where);
    const auto placement = c.str(tj, "placement", where);
    if (placement == "replicated")
      t.placement = Placement::kReplicated;
    else if (placement == "sharded")
      t.placement = Placement::kSharded;
    else if (placement == "per_rank")
      t.placement = Placement::kPerRank;
    else
      c.fail(where + "/placement", "unknown placement '" + placement + "'");
    const auto dtype_name = c.str(tj, "dtype", where);
    const auto dtype = parse_dtype_name(dtype_name);
    if (!dtype) c.fail(where + "/dtype", "unknown dtype '" + dtype_name + "'");
    t.dtype = *dtype;
    const auto& shape = c.field(tj, "shape", where);
    if (!shape.is_array() || shape.size() > 64)
      c.fail(where + "/shape", "expected a list of sizes");
    for (const auto& s : shape) {
      if (!s.is_number_integer() || s.get<std::int64_t>() < 0) {
        c.fail(where + "/shape", "expected sizes >= 0, found " + shape.dump());
      }
      t.shape.push_back(s.get<std::int64_t>());
    }
    t.dim = c.integer(tj, "dim", where, -1, static_cast<std::int64_t>(t.shape.size()) - 1);
    if (t.placement == Placement::kPerRank && t.dim != -1)
      c.fail(where + "/dim", "per-rank tensors are whole (-1)");
    const auto& pieces = c.field(tj, "pieces", where);
    if (!pieces.is_array()) c.fail(where + "/pieces", "expected a list");
    for (std::size_t k = 0; k < pieces.size(); ++k) {
      const std::string pw = where + "/pieces/" + std::to_string(k);
      IndexPiece p;
      p.rank = static_cast<int>(c.integer(pieces[k], "rank", pw, 0, index.world_size - 1));
      p.index = static_cast<std::uint64_t>(c.integer(pieces[k], "index", pw, 0, INT64_MAX));
      p.offset = c.integer(pieces[k], "offset", pw, 0, INT64_MAX);
      p.length = c.integer(pieces[k], "length", pw, 0, INT64_MAX);
      t.pieces.push_back(p);
    }
    const bool empty = std::any_of(t.shape.begin(), t.shape.end(), [](auto s) { return s == 0; });
    if (!empty) check_tiling(t, file);
    index.tensors.push_back(std::move(t));
  }
  index.tree = c.field(j, "tree", "");
  if (j.contains("user_metadata")) index.user_metadata = j["user_metadata"];
  return index;
}

}  // namespace zanj::detail
