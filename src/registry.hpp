// SPDX-License-Identifier: MIT
// A named, thread-safe table of factories or codecs: the one registry type behind
// register_activation/register_loss (modules), register_scheduler and register_optimizer.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace zanj::detail {

template <class Entry>
class Registry {
 public:
  /// Adds or replaces the entry under `name`.
  void add(const std::string& name, Entry entry) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_[name] = std::move(entry);
  }

  /// A copy of the entry under `name`, if any (a copy, so that it can be called unlocked).
  std::optional<Entry> find(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return std::nullopt;
    return it->second;
  }

  /// The first (name, entry) for which `pred(entry)` holds, in name order.
  template <class Pred>
  std::optional<std::pair<std::string, Entry>> find_if(Pred pred) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [name, entry] : entries_) {
      if (pred(entry)) return std::make_pair(name, entry);
    }
    return std::nullopt;
  }

  std::vector<std::string> names() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
  }

  /// "a, b, c": for messages that list what is known.
  std::string known() const {
    std::string out;
    for (const auto& n : names()) out += (out.empty() ? "" : ", ") + n;
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;
};

}  // namespace zanj::detail
