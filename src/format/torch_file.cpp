// SPDX-License-Identifier: MIT
// Python torch.save files (zip layout): <name>/data.pkl read by the restricted unpickler, its
// storages from <name>/data/<key>; and the writer of the same layout.
#include "configured_model/torch_file.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "../storage/storage.hpp"
#include "configured_model/checksum.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/logging.hpp"
#include "pickle.hpp"

namespace zanj {
namespace {

// The first bytes of a legacy (pre-1.6, non-zip) torch.save file: pickle protocol 2, then
// LONG1 of 10 bytes holding torch's magic number 0x1950a86a20f9469cfc6c.
constexpr unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46};

void check_is_zip(const std::string& path) {
  unsigned char head[8] = {};
  const std::string prefix = detail::read_prefix(path, sizeof head);
  std::memcpy(head, prefix.data(), prefix.size());
  const std::size_t got = prefix.size();
  if (got >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return;
  if (got >= sizeof kLegacyMagic && std::memcmp(head, kLegacyMagic, sizeof kLegacyMagic) == 0) {
    detail::throw_format_error(
        path, "",
        "a legacy torch.save file (written with _use_new_zipfile_serialization=False or by "
        "torch < 1.6), which is not supported; in Python, torch.save(torch.load(path), path) "
        "rewrites it in the zip layout");
  }
  detail::throw_format_error(path, "", "not a torch.save file (expected a zip archive)");
}

// The archive's top folder: torch.save names every entry "<name>/...", with one data.pkl.
std::string archive_prefix(const ArchiveReader& archive) {
  std::string prefix;
  for (const auto& e : archive.entries()) {
    const auto slash = e.name.find('/');
    if (slash == std::string::npos || e.name.compare(slash, std::string::npos, "/data.pkl") != 0) {
      continue;
    }
    if (!prefix.empty()) {
      detail::throw_format_error(
          archive.name(), e.name,
          "a second data.pkl (expected one, found also " + prefix + "data.pkl)");
    }
    prefix = e.name.substr(0, slash + 1);
  }
  if (prefix.empty()) {
    detail::throw_format_error(archive.name(), "",
                               "no <name>/data.pkl entry (expected a torch.save archive)");
  }
  if (archive.contains(prefix + "constants.pkl") || archive.contains(prefix + "code/")) {
    detail::throw_format_error(archive.name(), prefix + "data.pkl",
                               "a TorchScript/libtorch archive, not a Python torch.save file "
                               "(read it with read_libtorch)");
  }
  return prefix;
}

bool valid_key(const std::string& key) {
  if (key.empty() || key.size() > 64) return false;
  for (char c : key) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

}  // namespace

namespace detail {

Node read_torch(const ArchiveReader& archive, const ReadOptions& options, bool map_to_copy) {
  const std::string& file = archive.name();
  try {
    const std::string prefix = archive_prefix(archive);
    if (const auto* order = archive.find(prefix + "byteorder")) {
      const std::string value = archive.read(order->name);
      if (value != "little") {
        detail::throw_format_error(file, order->name,
                                   "byte order '" + value + "' (expected 'little')");
      }
    }
    if (const auto* version = archive.find(prefix + "version")) {
      const std::string value = archive.read(version->name);
      const std::string digits = value.substr(0, value.find_last_not_of('\n') + 1);
      if (digits.empty() || digits.size() > 4 ||
          digits.find_first_not_of("0123456789") != std::string::npos) {
        detail::throw_format_error(file, version->name,
                                   "expected the format version (digits), found " +
                                       std::to_string(value.size()) + " other bytes");
      }
    }
    const std::string pickle_entry = prefix + "data.pkl";
    const std::string payload = archive.read(pickle_entry);
    ArchiveMapping mapping;
    detail::StorageLoader load = [&](const std::string& key, c10::ScalarType dtype,
                                     std::int64_t numel) -> at::Tensor {
      const std::string name = prefix + "data/" + key;
      if (!valid_key(key)) {
        detail::throw_format_error(file, pickle_entry,
                                   "storage key '" + key + "' is not a plain name");
      }
      const EntryInfo* info = archive.find(name);
      if (!info) detail::throw_format_error(file, name, "missing storage entry");
      const auto item = static_cast<std::uint64_t>(c10::elementSize(dtype));
      if (info->size % item != 0 || info->size / item != static_cast<std::uint64_t>(numel)) {
        detail::throw_format_error(file, name,
                                   "storage size disagrees with its entry (expected " +
                                       std::to_string(numel) + " x " + std::to_string(item) +
                                       " bytes, found " + std::to_string(info->size) + ")");
      }
      const auto opts = at::TensorOptions().dtype(dtype);
      if ((options.mmap || map_to_copy) && info->method == 0 && numel > 0 && archive.can_map()) {
        const std::uint64_t at = archive.data_offset(name);
        if (at % item == 0) {
          if (!mapping) mapping = archive.mapping();
          // Mapped for a caller that copies at once (load_weights): the CRC is checked here,
          // as a read would (ISA-L, ~30 GB/s). Mapped for the user: as ReadOptions::mmap says.
          if (map_to_copy && options.check_crc &&
              crc32(0, mapping.get() + at, static_cast<std::size_t>(info->size)) != info->crc) {
            detail::throw_format_error(file, name, "CRC-32 mismatch (the data is corrupt)");
          }
          ArchiveMapping keep = mapping;
          return at::from_blob(
              mapping.get() + at, {numel}, [keep](void*) mutable { keep.reset(); }, opts);
        }
      }
      at::Tensor t = at::empty({numel}, opts);
      EntryReader r = archive.open_entry(name, options.check_crc);
      r.read(t.data_ptr(), info->size);
      r.finish();
      if (dtype == c10::kBool) {  // bytes other than 0 and 1 must not reach a bool tensor
        const auto* b = static_cast<const unsigned char*>(t.data_ptr());
        for (std::int64_t i = 0; i < numel; ++i) {
          if (b[i] > 1) {
            detail::throw_format_error(file, name,
                                       "bool storage holds byte " + std::to_string(b[i]) + " at " +
                                           std::to_string(i) + " (expected 0 or 1)");
          }
        }
      }
      return t;
    };
    detail::PickleLimits limits;
    limits.max_bytes = options.memory_budget;
    const auto value = detail::unpickle(payload, file, pickle_entry, load, limits);
    Node root = detail::to_node(value, file, limits);
    // Entries the payload did not use (serialization ids, a stray storage) are still part of
    // the file: their headers and CRCs are checked as `verify` checks them, so that a file reads
    // exactly when it verifies.
    archive.check_untouched(options.check_crc);
    logger()->info("read torch.save file {} ({} entries{})", file, archive.entries().size(),
                   options.mmap ? ", mapped" : "");
    return root;
  } catch (...) {
    detail::rethrow_as_format_error(file);
  }
}

Node read_torch(const std::string& path, const ReadOptions& options, bool map_to_copy) {
  check_is_zip(path);
  return read_torch(ArchiveReader::open(path, options.archive_limits), options, map_to_copy);
}

}  // namespace detail

Node read_torch(const ArchiveReader& archive, const ReadOptions& options) {
  return detail::read_torch(archive, options, false);
}

Node read_torch(const std::string& path, const ReadOptions& options) {
  return detail::read_torch(path, options, false);
}

void save_torch(const Node& root, const std::string& path) {
  ArchiveWriter writer(path);
  // torch.load finds the folder from data.pkl's name; Python names it after the file.
  const std::string prefix = "archive/";
  std::vector<std::pair<std::string, at::Tensor>> storages;
  const std::string payload = detail::pickle_tree(root, [&](const at::Tensor& storage) {
    std::string key = std::to_string(storages.size());
    storages.emplace_back(key, storage);
    return key;
  });
  writer.add(prefix + "data.pkl", payload, Compression::kStored);
  writer.add(prefix + "byteorder", "little", Compression::kStored);
  for (const auto& [key, t] : storages) {
    const auto bytes = static_cast<std::size_t>(t.numel()) * t.element_size();
    writer.add(prefix + "data/" + key,
               std::string_view(static_cast<const char*>(t.data_ptr()), bytes),
               Compression::kStored);
  }
  writer.add(prefix + "version", "3\n", Compression::kStored);
  writer.commit();
}

}  // namespace zanj
