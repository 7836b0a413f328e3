// SPDX-License-Identifier: MIT
#include "configured_model/checkpoint_manager.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

#include "../storage/storage.hpp"
#include "configured_model/archive.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/file.hpp"
#include "configured_model/json_text.hpp"
#include "configured_model/logging.hpp"

namespace zanj {
namespace {

constexpr const char* kPrefix = "ckpt-";
constexpr const char* kSuffix = ".zanj";
constexpr const char* kIndex = "checkpoints.json";

// The index that makes a directory a distributed checkpoint (zanj::kDistributedIndex).
constexpr const char* kDistributedIndexName = "checkpoint.json";

// "ckpt-00000100.zanj" (a file) or "ckpt-00000100" (a distributed checkpoint's directory) -> 100;
// anything else (temporaries, other files) -> nullopt.
std::optional<std::int64_t> step_of(const std::string& name, bool directory) {
  const std::string prefix = kPrefix, suffix = directory ? "" : kSuffix;
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return std::nullopt;
  }
  const std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.empty() || digits.size() > 18 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoll(digits);
}

// Where a checkpoint keeps the manager's books (SaveOptions::user_metadata).
constexpr const char* kBooksKey = "checkpoint_manager";

// The metrics a checkpoint written by a manager carries; nullopt for one without them (written
// before they were kept there, or by hand).
std::optional<nlohmann::json> carried_metrics(const std::string& path, bool directory) {
  nlohmann::ordered_json user;
  if (directory) {
    const std::string index_path = detail::join_path(path, kDistributedIndexName);
    const auto text = detail::storage_for(index_path).read_if_exists(index_path);
    if (!text) detail::throw_io_error(index_path, "", "no such file");
    const auto j = parse_json(*text, index_path, "");
    if (j.is_object() && j.contains("user_metadata")) user = j["user_metadata"];
  } else {
    const auto meta = read_metadata(path);
    if (meta.is_object() && meta.contains("configured_model") &&
        meta["configured_model"].is_object() &&
        meta["configured_model"].contains("user_metadata")) {
      user = meta["configured_model"]["user_metadata"];
    }
  }
  if (!user.is_object() || !user.contains(kBooksKey) || !user[kBooksKey].is_object() ||
      !user[kBooksKey].contains("metrics")) {
    return std::nullopt;
  }
  return nlohmann::json(user[kBooksKey]["metrics"]);
}

}  // namespace

CheckpointManager::CheckpointManager(std::string directory, CheckpointPolicy policy)
    : directory_(std::move(directory)), policy_(std::move(policy)) {
  detail::storage_for(directory_).create_directories(directory_);
  if (policy_.keep_best > 0 && policy_.metric.empty()) {
    throw ConfigError("CheckpointPolicy: keep_best needs a metric name");
  }
  remove_stale_temporaries();
  // A kill between a checkpoint's rename and the index's leaves the index stale: rebuilt from
  // the metrics each checkpoint carries, so keep_best ranks what is really there.
  bool stale = false;
  const auto infos = scan(&stale);
  if (stale) {
    logger()->info("{}: {} was stale; rebuilt from the checkpoints", directory_, kIndex);
    write_index(infos);
  }
}

SaveOptions CheckpointManager::with_books(SaveOptions options, std::int64_t step,
                                          const nlohmann::json& metrics) const {
  auto& user = options.user_metadata;
  if (user.is_null()) user = nlohmann::ordered_json::object();
  if (!user.is_object()) {
    throw UsageError(
        "CheckpointManager: SaveOptions::user_metadata must be null or an object "
        "(the manager adds its books under \"" +
        std::string(kBooksKey) + "\")");
  }
  user[kBooksKey] = {{"step", step}, {"metrics", nlohmann::ordered_json(metrics)}};
  return options;
}

// A killed save leaves its hidden temporary behind; one no live writer holds is removed.
void CheckpointManager::warn_damaged(const std::string& path, const std::string& what,
                                     bool older_left) const {
  logger()->warn("{}: damaged checkpoint skipped{}: {}", path,
                 older_left ? ", resuming from an older one" : " (no older one is left)", what);
}

void CheckpointManager::remove_stale_temporaries() const {
  for (const auto& name :
       detail::storage_for(directory_).remove_stale_temporaries(directory_, {kPrefix, kIndex})) {
    logger()->info("{}: removed {} left by an interrupted save", directory_, name);
  }
}

bool CheckpointManager::due(std::int64_t step) const {
  return policy_.save_every > 0 && step > 0 && step % policy_.save_every == 0;
}

std::string CheckpointManager::path_for(std::int64_t step) const {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%08lld%s", kPrefix, static_cast<long long>(step), kSuffix);
  return detail::join_path(directory_, name);
}

#ifdef CONFIGURED_MODEL_DISTRIBUTED
std::string CheckpointManager::directory_for(std::int64_t step) const {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%08lld", kPrefix, static_cast<long long>(step));
  return detail::join_path(directory_, name);
}
#endif

std::vector<CheckpointInfo> CheckpointManager::list() const { return scan(nullptr); }

namespace {
std::vector<CheckpointInfo> scan_directory(const std::string& directory_, bool* stale);
}  // namespace

std::vector<CheckpointInfo> CheckpointManager::scan(bool* stale) const {
  return scan_directory(directory_, stale);
}

std::vector<CheckpointInfo> list_checkpoints(const std::string& directory) {
  return scan_directory(directory, nullptr);
}

namespace {

// The checkpoints in `directory` by step; with `stale`, whether its index disagrees with them.
std::vector<CheckpointInfo> scan_directory(const std::string& directory_, bool* stale) {
  // Metrics from each checkpoint, else from the index; the listing decides what exists.
  bool index_read = false;
  nlohmann::json metrics_by_step = nlohmann::json::object();
  try {
    const std::string index_path = detail::join_path(directory_, kIndex);
    if (const auto text = detail::storage_for(index_path).read_if_exists(index_path)) {
      const auto j = parse_json(*text, index_path, "");
      if (j.is_object() && j.contains("checkpoints")) {
        index_read = true;
        for (const auto& c : j["checkpoints"]) {
          metrics_by_step[std::to_string(c.at("step").get<std::int64_t>())] =
              c.value("metrics", nlohmann::ordered_json());
        }
      }
    }
  } catch (const std::exception& e) {
    logger()->warn("{}: {} unreadable, metrics unknown: {}", directory_, kIndex, e.what());
  }
  std::vector<CheckpointInfo> out;
  const detail::Storage& storage = detail::storage_for(directory_);
  for (const auto& entry : storage.list(directory_)) {
    const bool directory = entry.directory;
    const auto step = step_of(entry.name, directory);
    if (!step) continue;
    const std::string path = detail::join_path(directory_, entry.name);
    if (directory && !storage.is_file(detail::join_path(path, kDistributedIndexName))) {
      continue;  // a distributed save that never committed
    }
    CheckpointInfo info;
    info.path = path;
    info.step = *step;
    auto m = metrics_by_step.find(std::to_string(*step));
    const bool indexed = m != metrics_by_step.end();
    if (indexed) info.metrics = *m;
    try {
      if (auto carried = carried_metrics(info.path, directory)) {
        if (stale && (!indexed || *carried != info.metrics)) *stale = true;
        info.metrics = std::move(*carried);
      } else if (stale && !indexed) {
        *stale = true;
      }
    } catch (const Error& e) {  // a damaged checkpoint: its metrics are unknown, not fatal here
      logger()->warn("{}: metrics unreadable: {}", info.path, e.what());
    }
    out.push_back(std::move(info));
  }
  if (stale && index_read) {
    // Entries for checkpoints that are gone (pruned, or removed by hand) also make it stale.
    std::size_t live = 0;
    for (const auto& info : out) live += metrics_by_step.count(std::to_string(info.step));
    if (live != metrics_by_step.size()) *stale = true;
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

}  // namespace

std::optional<CheckpointInfo> CheckpointManager::latest() const {
  auto all = list();
  if (all.empty()) return std::nullopt;
  return all.back();
}

std::optional<CheckpointInfo> CheckpointManager::best() const {
  std::optional<CheckpointInfo> best;
  if (policy_.metric.empty()) return best;
  for (auto& c : list()) {
    if (!c.metrics.is_object() || !c.metrics.contains(policy_.metric) ||
        !c.metrics[policy_.metric].is_number()) {
      continue;
    }
    const double v = c.metrics[policy_.metric].get<double>();
    if (!best || (policy_.maximize ? v > best->metrics[policy_.metric].get<double>()
                                   : v < best->metrics[policy_.metric].get<double>())) {
      best = c;
    }
  }
  return best;
}

void CheckpointManager::write_index(const std::vector<CheckpointInfo>& infos) const {
  nlohmann::ordered_json j;
  j["checkpoints"] = nlohmann::ordered_json::array();
  for (const auto& c : infos) {
    j["checkpoints"].push_back({{"file", detail::last_component(c.path)},
                                {"step", c.step},
                                {"metrics", nlohmann::ordered_json(c.metrics)}});
  }
  // Same crash-safe path as checkpoints: temporary (locked while written), fsync, rename,
  // directory fsync; or one PUT.
  const std::string index_path = detail::join_path(directory_, kIndex);
  detail::storage_for(index_path).write_atomically(index_path, dump_json(j));
}

void CheckpointManager::check_metrics(const nlohmann::json& metrics) const {
  if (policy_.keep_best > 0 && (!metrics.is_object() || !metrics.contains(policy_.metric) ||
                                !metrics[policy_.metric].is_number())) {
    throw ConfigError("CheckpointManager::save: metrics must hold a number for '" + policy_.metric +
                      "' (keep_best is set)");
  }
}

void CheckpointManager::bookkeep(std::int64_t step, const std::string& path,
                                 const nlohmann::json& metrics) {
  auto infos = list();
  for (auto& c : infos) {
    if (c.step == step) c.metrics = metrics;
  }
  write_index(infos);
  prune(step);
  logger()->info("{}: checkpoint at step {} saved", path, step);
}

void CheckpointManager::reserve_async(const Node& tree) {
  if (!saver_) saver_ = std::make_unique<AsyncSaver>();
  saver_->reserve(tree);
}

SaveHandle CheckpointManager::save_async(std::int64_t step, const Node& tree,
                                         const nlohmann::json& metrics,
                                         const SaveOptions& options) {
  check_metrics(metrics);
  if (!saver_) saver_ = std::make_unique<AsyncSaver>();
  const std::string path = path_for(step);
  return saver_->save(tree, path, with_books(options, step, metrics),
                      [this, step, path, metrics] { bookkeep(step, path, metrics); });
}

void CheckpointManager::wait() {
  if (saver_) saver_->wait();
}

std::string CheckpointManager::save(std::int64_t step, const Node& tree,
                                    const nlohmann::json& metrics, const SaveOptions& options) {
  check_metrics(metrics);
  wait();  // saves land in order
  const std::string path = path_for(step);
  zanj::save(tree, path, with_books(options, step, metrics));
  bookkeep(step, path, metrics);
  return path;
}

void CheckpointManager::prune(std::int64_t just_written) {
  auto infos = list();
  std::set<std::int64_t> keep{just_written};
  if (policy_.keep_last > 0) {
    for (std::size_t i = infos.size() > static_cast<std::size_t>(policy_.keep_last)
                             ? infos.size() - static_cast<std::size_t>(policy_.keep_last)
                             : 0;
         i < infos.size(); ++i) {
      keep.insert(infos[i].step);
    }
  }
  if (policy_.keep_every > 0) {
    for (const auto& c : infos) {
      if (c.step % policy_.keep_every == 0) keep.insert(c.step);
    }
  }
  if (!policy_.metric.empty()) {
    std::vector<CheckpointInfo> scored;
    for (const auto& c : infos) {
      if (c.metrics.is_object() && c.metrics.contains(policy_.metric) &&
          c.metrics[policy_.metric].is_number()) {
        scored.push_back(c);
      }
    }
    std::stable_sort(scored.begin(), scored.end(), [&](const auto& a, const auto& b) {
      const double va = a.metrics[policy_.metric].template get<double>();
      const double vb = b.metrics[policy_.metric].template get<double>();
      return policy_.maximize ? va > vb : va < vb;
    });
    const auto k =
        std::max<std::int64_t>(policy_.keep_best, scored.empty() ? 0 : 1);  // best always kept
    for (std::size_t i = 0; i < scored.size() && static_cast<std::int64_t>(i) < k; ++i) {
      keep.insert(scored[i].step);
    }
  }
  bool removed = false;
  std::vector<CheckpointInfo> kept;
  for (const auto& c : infos) {
    if (keep.count(c.step)) {
      kept.push_back(c);
      continue;
    }
    try {
      detail::storage_for(c.path).remove_all(c.path);
      removed = true;
    } catch (const Error& e) {
      logger()->warn("{}: cannot remove old checkpoint: {}", c.path, e.what());
      kept.push_back(c);
    }
  }
  if (removed) write_index(kept);
}

}  // namespace zanj
