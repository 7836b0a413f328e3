// SPDX-License-Identifier: MIT
// Tree <-> archive: the top of the save and read pipelines.
#include "configured_model/file.hpp"

#include <c10/util/Exception.h>

#include "configured_model/errors.hpp"
#include "configured_model/json_text.hpp"
#include "configured_model/logging.hpp"
#include "configured_model/metadata.hpp"
#include "configured_model/tree.hpp"

namespace zanj {
namespace {

using ojson = nlohmann::ordered_json;

ojson read_meta(const ArchiveReader& archive, const ReadOptions& options) {
  if (!archive.contains(kMetaEntry)) return ojson();
  return parse_json(archive.read(kMetaEntry), archive.name(), kMetaEntry, options.json_limits);
}

}  // namespace

void save(const Node& root, const std::string& path, const SaveOptions& options) {
  SerializedTree tree = serialize_tree(root, options);
  const ojson meta = make_metadata(options, tree.externals);
  ArchiveWriter writer(path);
  // Python's order: meta, tree, then externals in the order they were met.
  std::string meta_text = dump_json(meta);
  std::string tree_text = dump_json(tree.json);
  Progress progress;
  progress.bytes_total = meta_text.size() + tree_text.size();
  for (const auto& e : tree.externals) progress.bytes_total += e.bytes.size();
  auto add = [&](const std::string& name, std::string bytes) {
    logger()->debug("{}: writing {} ({} bytes)", path, name, bytes.size());
    progress.bytes_done += bytes.size();
    writer.add(name, std::move(bytes), options.compression);
    if (options.progress) {
      progress.entry = name;
      options.progress(progress);
    }
  };
  add(kMetaEntry, std::move(meta_text));
  add(kTreeEntry, std::move(tree_text));
  for (auto& e : tree.externals) add(e.name, std::move(e.bytes));
  const auto total = progress.bytes_total;
  writer.commit();
  logger()->info("saved {} ({} bytes, {} external entries)", path, total, tree.externals.size());
}

namespace {

Node read_tree(const ArchiveReader& archive, const ReadOptions& options) {
  const ojson meta = read_meta(archive, options);
  const std::string& file = archive.name();
  ojson externals_info;
  if (meta.is_null()) {
    const std::string what = std::string(kMetaEntry) + " is missing (Python ZANJ requires it)";
    if (options.error_mode == ErrorMode::kExcept) detail::throw_format_error(file, "", what);
    if (options.error_mode == ErrorMode::kWarn)
      logger()->warn("{}", detail::message(file, "", what));
  } else {
    check_metadata(meta, file, options);
    auto it = meta.find("externals_info");
    if (it != meta.end() && !it->is_null()) {
      if (!it->is_object()) {
        detail::throw_format_error(file, kMetaEntry, "'externals_info' must be an object");
      }
      for (auto e = it->begin(); e != it->end(); ++e) {
        if (!archive.contains(e.key())) {
          detail::throw_format_error(file, e.key(),
                                     "listed in externals_info but absent from the archive");
        }
      }
      externals_info = *it;
    }
  }
  if (!archive.contains(kTreeEntry)) {
    detail::throw_format_error(file, kTreeEntry, "missing (not a ZANJ archive)");
  }
  const ojson json = parse_json(archive.read(kTreeEntry), file, kTreeEntry, options.json_limits);
  Node root = deserialize_tree(json, archive, externals_info, options);
  logger()->info("read {} ({} entries)", file, archive.entries().size());
  return root;
}

}  // namespace

Node read(const ArchiveReader& archive, const ReadOptions& options) {
  try {
    return read_tree(archive, options);
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    detail::throw_format_error(archive.name(), "",
                               std::string("unreadable: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    // Nothing but zanj::Error leaves a read: torch, nlohmann and allocation failures caused by
    // a file are reported as a FormatError naming it.
    detail::throw_format_error(archive.name(), "", std::string("unreadable: ") + e.what());
  }
}

Node read(const std::string& path, const ReadOptions& options) {
  return read(ArchiveReader::open(path, options.archive_limits), options);
}

nlohmann::ordered_json read_metadata(const std::string& path, const ReadOptions& options) {
  return read_meta(ArchiveReader::open(path, options.archive_limits), options);
}

}  // namespace zanj
