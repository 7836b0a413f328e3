// SPDX-License-Identifier: MIT
// Building ordered JSON objects in linear time. nlohmann's ordered_json looks a key up among the
// keys before it on every insertion (quadratic in the object's size); writers that know their
// keys are distinct append instead.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace zanj::detail {

/// Appends `key: value` to `object` (a JSON object, or null, which becomes one) without looking
/// for `key`: the caller guarantees it is not there yet.
inline void append_member(nlohmann::ordered_json& object, std::string key,
                          nlohmann::ordered_json value) {
  if (object.is_null()) object = nlohmann::ordered_json::object();
  auto& members = object.get_ref<nlohmann::ordered_json::object_t&>();
  members.Container::emplace_back(std::move(key), std::move(value));
}

/// nlohmann's message without its "[json.exception.parse_error.101] " prefix, which names the
/// library's internals rather than the problem.
inline std::string json_error_text(const nlohmann::json::exception& e) {
  std::string text = e.what();
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find("] ");
    if (close != std::string::npos) text.erase(0, close + 2);
  }
  return text;
}

}  // namespace zanj::detail
