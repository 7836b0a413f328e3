// SPDX-License-Identifier: MIT
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "configured_model/errors.hpp"
#include "configured_model/export.hpp"
#include "configured_model/logging.hpp"

// std::optional config fields: null when empty (nlohmann 3.11.2, Debian 12's, has no serializer
// for them; define ZANJ_NO_OPTIONAL_SERIALIZER if your code brings its own).
#if !defined(ZANJ_NO_OPTIONAL_SERIALIZER) &&                                   \
    (NLOHMANN_JSON_VERSION_MAJOR * 10000 + NLOHMANN_JSON_VERSION_MINOR * 100 + \
     NLOHMANN_JSON_VERSION_PATCH) <= 31102
NLOHMANN_JSON_NAMESPACE_BEGIN
template <class T>
struct adl_serializer<std::optional<T>> {
  static void to_json(json& j, const std::optional<T>& v) {
    if (v)
      j = *v;
    else
      j = nullptr;
  }
  static void from_json(const json& j, std::optional<T>& v) {
    if (j.is_null())
      v.reset();
    else
      v = j.get<T>();
  }
};
NLOHMANN_JSON_NAMESPACE_END
#endif

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// What reading a model's stored config found (ReadOptions::config_report). Each field listed
/// here is also logged as a warning.
struct ConfigReport {
  std::vector<std::string> unknown_fields;    ///< stored, but the Config has no such field
  std::vector<std::string> defaulted_fields;  ///< the Config's, not stored: its default is used
  int stored_version = 0;                     ///< the file's config version (0: none recorded)
  bool upgraded = false;                      ///< the Config's zanj_upgrade_config ran
};

namespace detail {

/// A Config that declares `static constexpr int zanj_config_version` (saved with the model) and
/// `static nlohmann::json zanj_upgrade_config(nlohmann::json stored, int stored_version)`.
template <class T, class = void>
struct has_config_version : std::false_type {};
template <class T>
struct has_config_version<
    T, std::void_t<decltype(T::zanj_config_version),
                   decltype(T::zanj_upgrade_config(std::declval<nlohmann::json>(), 0))>>
    : std::true_type {};

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
/// 20.0 and NaN rather than truncating them). Stored fields the Config lacks, and Config fields
/// not stored (which took their defaults: NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT), are
/// logged as warnings naming each one and listed in `*report` when given.
/// @throws ConfigError naming `file`, the config entry, the offending field where it can be told,
///         and nlohmann's own diagnostic.
template <class Config>
Config config_from_json(const nlohmann::json& j, const std::string& file,
                        ConfigReport* report = nullptr) {
  static_assert(detail::is_json_round_trippable_v<Config>,
                "configured_model: Config must be convertible to and from nlohmann::json. Add "
                "NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(YourConfig, field1, ...) in YourConfig's "
                "namespace, or define to_json/from_json there.");
  const detail::ConfigCheck check = detail::check_config_json<Config>(j);
  if (!check.type_errors.empty()) {
    throw ConfigError(detail::message(file, "zanj_model_config",
                                      "cannot build the config: " + check.type_errors));
  }
  Config config = [&] {
    try {
      return j.get<Config>();
    } catch (const nlohmann::json::exception& e) {
      std::string what = "cannot build the config: ";
      if (!check.missing.empty()) {
        what += check.missing + " (" + e.what() +
                "). A field added since the file was written needs a default: declare the config "
                "with NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT, or give it a "
                "zanj_config_version and zanj_upgrade_config";
      } else {
        what += e.what();
      }
      throw ConfigError(detail::message(file, "zanj_model_config", what));
    }
  }();
  const nlohmann::json built(config);
  if (j.is_object() && built.is_object()) {
    ConfigReport found;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!built.contains(it.key())) found.unknown_fields.push_back(it.key());
    }
    for (auto it = built.begin(); it != built.end(); ++it) {
      if (!j.contains(it.key())) found.defaulted_fields.push_back(it.key());
    }
    for (const auto& f : found.unknown_fields) {
      logger()->warn("{}", detail::message(file, "zanj_model_config/" + f,
                                           "stored, but the config has no such field: ignored"));
    }
    for (const auto& f : found.defaulted_fields) {
      logger()->warn("{}",
                     detail::message(file, "zanj_model_config/" + f,
                                     "not stored: the default " + built.at(f).dump() + " is used"));
    }
    if (report) {
      report->unknown_fields = std::move(found.unknown_fields);
      report->defaulted_fields = std::move(found.defaulted_fields);
    }
  }
  return config;
}

}  // namespace zanj

CONFIGURED_MODEL_API_END
