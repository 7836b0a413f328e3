// SPDX-License-Identifier: MIT
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "configured_model/errors.hpp"
#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {
namespace detail {

template <class T, class = void>
struct is_json_round_trippable : std::false_type {};

template <class T>
struct is_json_round_trippable<
    T, std::void_t<decltype(nlohmann::json(std::declval<const T&>())),
                   decltype(std::declval<const nlohmann::json&>().template get<T>())>>
    : std::true_type {};

template <class T>
inline constexpr bool is_json_round_trippable_v = is_json_round_trippable<T>::value;

/// Compares `stored` with the JSON of a default-constructed Config, field by field.
/// `type_errors`: scalar fields (number, bool, string) whose stored JSON type differs, e.g. a
/// float (or NaN) for an integer field, which nlohmann would silently truncate.
/// `missing`: fields absent from `stored`.
struct ConfigCheck {
  std::string type_errors;
  std::string missing;
};

template <class Config>
ConfigCheck check_config_json(const nlohmann::json& stored) {
  ConfigCheck out;
  if constexpr (std::is_default_constructible_v<Config>) {
    nlohmann::json reference;
    try {
      reference = nlohmann::json(Config{});
    } catch (...) {
      return out;
    }
    if (!reference.is_object() || !stored.is_object()) return out;
    auto add = [](std::string& list, const std::string& item) {
      list += (list.empty() ? "" : "; ") + item;
    };
    for (auto it = reference.begin(); it != reference.end(); ++it) {
      auto found = stored.find(it.key());
      if (found == stored.end()) {
        add(out.missing, "field '" + it.key() + "': missing");
        continue;
      }
      if (it->is_structured() || it->is_null()) continue;  // free-form JSON members
      const bool want_int = it->is_number_integer();
      const bool ok = want_int
                          ? found->is_number_integer()
                          : (it->is_number() ? found->is_number() : it->type() == found->type());
      if (!ok) {
        const std::string found_type =
            found->is_number_float() ? "float " + found->dump() : std::string(found->type_name());
        add(out.type_errors, "field '" + it.key() + "': expected " +
                                 (want_int ? std::string("integer") : it->type_name()) +
                                 ", found " + found_type);
      }
    }
  }
  return out;
}

}  // namespace detail

/// Converts stored JSON to a Config with nlohmann's from_json.
/// Scalar fields must hold the JSON type of the Config's default (an integer field refuses 20.5,
/// 20.0 and NaN rather than truncating them).
/// @throws ConfigError naming `file`, the config entry, the offending field where it can be told,
///         and nlohmann's own diagnostic.
template <class Config>
Config config_from_json(const nlohmann::json& j, const std::string& file) {
  static_assert(detail::is_json_round_trippable_v<Config>,
                "configured_model: Config must be convertible to and from nlohmann::json. Add "
                "NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(YourConfig, field1, ...) in YourConfig's "
                "namespace, or define to_json/from_json there.");
  const detail::ConfigCheck check = detail::check_config_json<Config>(j);
  if (!check.type_errors.empty()) {
    throw ConfigError(detail::message(file, "zanj_model_config",
                                      "cannot build the config: " + check.type_errors));
  }
  try {
    return j.get<Config>();
  } catch (const nlohmann::json::exception& e) {
    std::string what = "cannot build the config: ";
    if (!check.missing.empty())
      what += check.missing + " (" + e.what() + ")";
    else
      what += e.what();
    throw ConfigError(detail::message(file, "zanj_model_config", what));
  }
}

}  // namespace zanj

CONFIGURED_MODEL_API_END
