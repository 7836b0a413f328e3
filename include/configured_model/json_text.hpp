// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// How JSON text is laid out.
enum class JsonStyle {
  kIndented,  ///< Python `json.dumps(obj, indent="\t")`: what ZANJ writes for its two JSON entries.
  kLine,  ///< Python `json.dumps(obj)`: one line, `", "` and `": "` separators (`.jsonl` lines).
};

/// Writes JSON exactly as Python's `json` module does: keys in insertion order, `ensure_ascii`,
/// floats in Python `repr` form (`1.0`, `1e-05`), and the bare tokens `NaN`, `Infinity`,
/// `-Infinity` for non-finite floats (Python reads them; strict JSON parsers do not).
std::string dump_json(const nlohmann::ordered_json& value, JsonStyle style = JsonStyle::kIndented);

/// Writes one double as Python's `repr(float)` would.
std::string format_double(double value);

/// Limits applied while parsing JSON text from a file.
struct JsonLimits {
  std::size_t max_depth = 512;           ///< deepest nesting of arrays/objects accepted
  std::size_t max_bytes = 256ULL << 20;  ///< longest JSON text accepted (256 MiB)
};

/// Parses JSON text that may contain Python's `NaN`, `Infinity` and `-Infinity` tokens.
/// @throws FormatError naming `file` and `entry` on malformed text or nesting deeper than allowed.
nlohmann::ordered_json parse_json(std::string_view text, std::string_view file,
                                  std::string_view entry, const JsonLimits& limits = {});

}  // namespace zanj

CONFIGURED_MODEL_API_END
