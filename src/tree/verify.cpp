// SPDX-License-Identifier: MIT
#include "configured_model/verify.hpp"

#include <set>

#include "configured_model/archive.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/file.hpp"
#include "configured_model/json_text.hpp"
#include "configured_model/metadata.hpp"

namespace zanj {
namespace {

std::uint64_t count_tensors(const Node& n) {
  if (n.is_tensor()) return 1;
  std::uint64_t c = 0;
  if (n.is_list()) {
    for (const auto& v : n.as_list()) c += count_tensors(v);
  } else if (n.is_dict()) {
    for (const auto& kv : n.as_dict()) c += count_tensors(kv.second);
  }
  return c;
}

void collect_refs(const nlohmann::ordered_json& j, std::set<std::string>& refs) {
  if (j.is_object()) {
    auto it = j.find("$ref");
    if (it != j.end() && it->is_string()) refs.insert(it->get<std::string>());
  }
  if (j.is_structured()) {
    for (const auto& v : j) collect_refs(v, refs);
  }
}

}  // namespace

VerifyReport verify(const std::string& path, const ReadOptions& options) {
  VerifyReport report;
  auto problem = [&](const std::string& what) {
    report.ok = false;
    report.problems.push_back(what);
  };
  std::optional<ArchiveReader> archive;
  try {
    ArchiveLimits limits = options.archive_limits;
    limits.check_consistency = true;  // libzip compares every local header too
    archive.emplace(ArchiveReader::open(path, limits));
  } catch (const FormatError& e) {
    problem(e.what());
    return report;
  }
  // 1. Every entry's bytes and CRC.
  std::set<std::string> refs;
  for (const auto& e : archive->entries()) {
    ++report.entries;
    try {
      archive->data_offset(e.name);  // its local header: where it should be, naming it
      const std::string bytes = archive->read(e.name);
      report.bytes += bytes.size();
      if (e.name == kTreeEntry || e.name == kMetaEntry) {
        const auto j = parse_json(bytes, path, e.name, options.json_limits);
        if (e.name == kTreeEntry) collect_refs(j, refs);
        if (e.name == kMetaEntry && j.is_object() && j.contains("externals_info") &&
            j["externals_info"].is_object()) {
          for (auto it = j["externals_info"].begin(); it != j["externals_info"].end(); ++it) {
            refs.insert(it.key());
          }
        }
      }
    } catch (const Error& e2) {
      problem(e2.what());
    }
  }
  // 2. Entries nothing points to (ignored by every reader: likely a broken writer).
  for (const auto& e : archive->entries()) {
    if (e.name != kTreeEntry && e.name != kMetaEntry && !refs.count(e.name)) {
      problem(
          detail::message(path, e.name, "entry is not referenced by the tree or externals_info"));
    }
  }
  // 3. The whole tree, strictly: headers against JSON items, shapes, dtypes, $refs.
  ReadOptions strict = options;
  strict.error_mode = ErrorMode::kExcept;
  try {
    report.tensors = count_tensors(read(*archive, strict));
  } catch (const Error& e) {
    problem(e.what());
  }
  return report;
}

}  // namespace zanj
