// SPDX-License-Identifier: MIT
// Tree <-> archive: the top of the save and read pipelines.
#include "configured_model/file.hpp"

#include <c10/util/Exception.h>

#include <istream>
#include <ostream>

#include "../format/json_object.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/json_text.hpp"
#include "configured_model/logging.hpp"
#include "configured_model/metadata.hpp"
#include "configured_model/npy.hpp"
#include "configured_model/tree.hpp"
#include "key_types.hpp"

namespace zanj {
namespace {

using ojson = nlohmann::ordered_json;

ojson read_meta(const ArchiveReader& archive, const ReadOptions& options) {
  if (!archive.contains(kMetaEntry)) return ojson();
  return parse_json(archive.read(kMetaEntry), archive.name(), kMetaEntry, options.json_limits);
}

}  // namespace

namespace {

ArchiveWriterOptions writer_options_of(const SaveOptions& options) {
  ArchiveWriterOptions writer_options;
  writer_options.deflate_level = options.deflate_level;
  writer_options.threads = options.threads;
  return writer_options;
}

// Writes the tree's entries in Python's order and commits.
void write_tree(const Node& root, ArchiveWriter& writer, const SaveOptions& options) {
  const std::string& path = writer.path();
  SerializedTree tree = serialize_tree(root, options);
  const ojson meta = make_metadata(options, tree.externals, detail::int_key_dict_paths(root));
  // Python's order: meta, tree, then externals in the order they were met. Tensor data goes
  // from the tensors' memory to the file (npy_pieces copies only tensors needing conversion).
  const std::string meta_text = dump_json(meta);
  const std::string tree_text = dump_json(tree.json);
  Progress progress;
  progress.bytes_total = meta_text.size() + tree_text.size();
  for (const auto& e : tree.externals) progress.bytes_total += e.size();
  auto add = [&](const std::string& name, std::initializer_list<std::string_view> pieces) {
    std::uint64_t n = 0;
    for (auto p : pieces) n += p.size();
    logger()->debug("{}: writing {} ({} bytes)", path, name, n);
    writer.add(name, pieces, options.compression);
    progress.bytes_done += n;
    if (options.progress) {
      progress.entry = name;
      options.progress(progress);
    }
  };
  add(kMetaEntry, {meta_text});
  add(kTreeEntry, {tree_text});
  for (auto& e : tree.externals) {
    if (e.data.defined()) {
      const NpyPieces npy = npy_pieces(e.data);
      add(e.name, {npy.header, npy.data_bytes()});
    } else {
      add(e.name, {e.bytes});
    }
  }
  const auto total = progress.bytes_total;
  writer.commit();
  logger()->info("saved {} ({} bytes, {} external entries)", path, total, tree.externals.size());
}

}  // namespace

void save(const Node& root, const std::string& path, const SaveOptions& options) {
  ArchiveWriter writer(path, writer_options_of(options));
  write_tree(root, writer, options);
}

std::string save_to_bytes(const Node& root, const SaveOptions& options) {
  std::string bytes;
  ArchiveWriter writer(&bytes, writer_options_of(options));
  write_tree(root, writer, options);
  return bytes;
}

void save(const Node& root, std::ostream& out, const SaveOptions& options) {
  const std::string bytes = save_to_bytes(root, options);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) detail::throw_io_error("<stream>", "", "writing the archive to the stream failed");
}

Node read_bytes(std::string bytes, const ReadOptions& options, const std::string& name) {
  return read(ArchiveReader::from_bytes(std::move(bytes), name, options.archive_limits), options);
}

Node read(std::istream& in, const ReadOptions& options) {
  return read_bytes(detail::read_stream(in, options.archive_limits), options, "<stream>");
}

namespace detail {
std::string read_stream(std::istream& in, const ArchiveLimits& limits) {
  std::string bytes;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    bytes.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (bytes.size() > limits.max_entry_bytes) {
      throw_format_error(
          "<stream>", "",
          "longer than the limit of " + std::to_string(limits.max_entry_bytes) + " bytes");
    }
  }
  if (in.bad()) throw_io_error("<stream>", "", "reading the stream failed");
  return bytes;
}
}  // namespace detail

Document read_document(const ArchiveReader& archive, const ReadOptions& options) {
  try {
    Document doc;
    doc.metadata = read_meta(archive, options);
    const std::string& file = archive.name();
    const ojson& meta = doc.metadata;
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
        doc.externals_info = *it;
      }
    }
    if (!archive.contains(kTreeEntry)) {
      detail::throw_format_error(file, kTreeEntry, "missing (not a ZANJ archive)");
    }
    doc.tree = parse_json(archive.read(kTreeEntry), file, kTreeEntry, options.json_limits);
    return doc;
  } catch (...) {
    detail::rethrow_as_format_error(archive.name());
  }
}

Node read(const ArchiveReader& archive, const Document& document, const ReadOptions& options,
          const TensorDestination& destination) {
  try {
    Node root =
        deserialize_tree(document.tree, archive, document.externals_info, options, destination);
    if (document.metadata.is_object()) {  // int-keyed dicts, listed by our writer
      const auto ours = document.metadata.find("configured_model");
      if (ours != document.metadata.end() && ours->is_object()) {
        const auto paths = ours->find("int_key_dicts");
        if (paths != ours->end()) detail::mark_int_key_dicts(root, *paths, archive.name());
      }
    }
    // Entries the tree does not name are still part of the file: their headers and CRCs are
    // checked, and each is an anomaly (no reader uses it: a broken writer, or data a
    // conversion would drop), so that a file reads strictly exactly when `verify` passes it.
    for (const auto& name : archive.check_untouched(options.check_crc)) {
      if (name == kMetaEntry || name == kTreeEntry) continue;
      const std::string what = "entry is not referenced by the tree or externals_info";
      if (options.error_mode == ErrorMode::kExcept) {
        detail::throw_format_error(archive.name(), name, what);
      }
      if (options.error_mode == ErrorMode::kWarn) {
        logger()->warn("{}", detail::message(archive.name(), name, what));
      }
    }
    logger()->info("read {} ({} entries{})", archive.name(), archive.entries().size(),
                   options.mmap ? ", mapped" : "");
    return root;
  } catch (...) {
    detail::rethrow_as_format_error(archive.name());
  }
}

Node read(const ArchiveReader& archive, const ReadOptions& options) {
  return read(archive, read_document(archive, options), options);
}

Node read(const std::string& path, const ReadOptions& options) {
  return read(ArchiveReader::open(path, options.archive_limits), options);
}

nlohmann::ordered_json read_metadata(const std::string& path, const ReadOptions& options) {
  return read_meta(ArchiveReader::open(path, options.archive_limits), options);
}

namespace detail {

void rethrow_as_format_error(const std::string& file) {
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw_format_error(file, "", std::string("unreadable: ") + e.what_without_backtrace());
  } catch (const nlohmann::json::exception& e) {
    throw_format_error(file, "", "unreadable: " + json_error_text(e));
  } catch (const std::bad_alloc&) {
    throw LimitError(message(file, "", "unreadable: more memory than this process can have"));
  } catch (const std::exception& e) {
    throw_format_error(file, "", std::string("unreadable: ") + e.what());
  }
}

}  // namespace detail
}  // namespace zanj
