// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "configured_model/errors.hpp"

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

/// Names the fields of `stored` whose JSON type differs from the same field of a
/// default-constructed Config, or that are missing (a hint for nlohmann's type errors, which do
/// not name the field).
template <class Config>
std::string config_field_hint(const nlohmann::json& stored) {
  if constexpr (std::is_default_constructible_v<Config>) {
    nlohmann::json reference;
    try {
      reference = nlohmann::json(Config{});
    } catch (...) {
      return {};
    }
    if (!reference.is_object() || !stored.is_object()) return {};
    std::string hint;
    for (auto it = reference.begin(); it != reference.end(); ++it) {
      auto found = stored.find(it.key());
      std::string problem;
      if (found == stored.end()) {
        problem = "missing";
      } else {
        const bool both_numbers = it->is_number() && found->is_number();
        const bool int_expected = it->is_number_integer() && !found->is_number_integer();
        if ((!both_numbers && it->type() != found->type() && !it->is_null()) || int_expected) {
          problem = std::string("expected ") + (int_expected ? "integer" : it->type_name()) +
                    ", found " + (found->is_number_float() ? "float" : found->type_name());
        }
      }
      if (!problem.empty()) hint += (hint.empty() ? "" : "; ") + ("field '" + it.key() + "': " + problem);
    }
    return hint;
  } else {
    return {};
  }
}

}  // namespace detail

/// Converts stored JSON to a Config with nlohmann's from_json.
/// @throws ConfigError naming `file`, the config entry, the offending field where it can be told,
///         and nlohmann's own diagnostic.
template <class Config>
Config config_from_json(const nlohmann::json& j, const std::string& file) {
  static_assert(detail::is_json_round_trippable_v<Config>,
                "configured_model: Config must be convertible to and from nlohmann::json. Add "
                "NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(YourConfig, field1, ...) in YourConfig's "
                "namespace, or define to_json/from_json there.");
  try {
    return j.get<Config>();
  } catch (const nlohmann::json::exception& e) {
    std::string what = "cannot build the config: ";
    const std::string hint = detail::config_field_hint<Config>(j);
    if (!hint.empty()) what += hint + " (" + e.what() + ")";
    else what += e.what();
    throw ConfigError(detail::message(file, "zanj_model_config", what));
  }
}

}  // namespace zanj
