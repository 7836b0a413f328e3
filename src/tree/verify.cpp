// SPDX-License-Identifier: MIT
#include "configured_model/verify.hpp"

#include <set>

#include "../parallel.hpp"
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
  // 1. Every entry's bytes and CRC, entries in parallel (tensor data streams through a small
  // buffer; only the two JSON entries are kept whole).
  std::set<std::string> refs;
  const auto& entries = archive->entries();
  std::vector<std::string> errors(entries.size());
  std::vector<std::string> json_text(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    try {
      archive->data_offset(entries[i].name);  // its local header, checked here (not on workers)
    } catch (const Error& e) {
      errors[i] = e.what();
    }
  }
  detail::run_in_order(
      entries.size(), detail::worker_count(options.threads, entries.size()),
      [&](std::size_t i) {
        const EntryInfo& e = entries[i];
        if (!errors[i].empty()) return;
        try {
          if (e.name == kTreeEntry || e.name == kMetaEntry) {
            json_text[i] = archive->read(e.name);
            return;
          }
          EntryReader r = archive->open_entry(e.name, true);
          std::vector<char> scratch(static_cast<std::size_t>(
              std::min<std::uint64_t>(r.remaining(), std::uint64_t{1} << 20)));
          while (r.remaining() > 0) {
            const auto n =
                static_cast<std::size_t>(std::min<std::uint64_t>(r.remaining(), scratch.size()));
            r.read(scratch.data(), n);
          }
          r.finish();
        } catch (const Error& e2) {
          errors[i] = e2.what();
        }
      },
      [&](std::size_t i) {
        const EntryInfo& e = entries[i];
        ++report.entries;
        if (!errors[i].empty()) {
          problem(errors[i]);
          return;
        }
        report.bytes += e.size;
        if (e.name != kTreeEntry && e.name != kMetaEntry) return;
        try {
          const auto j = parse_json(json_text[i], path, e.name, options.json_limits);
          std::string().swap(json_text[i]);
          if (e.name == kTreeEntry) collect_refs(j, refs);
          if (e.name == kMetaEntry && j.is_object() && j.contains("externals_info") &&
              j["externals_info"].is_object()) {
            for (auto it = j["externals_info"].begin(); it != j["externals_info"].end(); ++it) {
              refs.insert(it.key());
            }
          }
        } catch (const Error& e2) {
          problem(e2.what());
        }
      });
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
