// SPDX-License-Identifier: MIT
#include "configured_model/json_text.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

#include "configured_model/errors.hpp"

namespace zanj {
namespace {

using ojson = nlohmann::ordered_json;

// Non-finite numbers are smuggled through nlohmann's parser as strings with this prefix; a file
// that already contains the prefix is refused rather than misread.
constexpr std::string_view kSentinelPrefix = "\\u0000zanj:";
constexpr std::string_view kNaN = "\"\\u0000zanj:NaN\"";
constexpr std::string_view kInf = "\"\\u0000zanj:Infinity\"";
constexpr std::string_view kNegInf = "\"\\u0000zanj:-Infinity\"";
const std::string kNaNValue = std::string("\0zanj:NaN", 9);
const std::string kInfValue = std::string("\0zanj:Infinity", 14);
const std::string kNegInfValue = std::string("\0zanj:-Infinity", 15);

void dump_string(const std::string& s, std::string& out) {
  // nlohmann's serializer does the escaping (ensure_ascii: \uXXXX with surrogate pairs).
  out += ojson(s).dump(-1, ' ', /*ensure_ascii=*/true);
}

void dump_value(const ojson& v, JsonStyle style, int depth, std::string& out) {
  const bool indented = style == JsonStyle::kIndented;
  auto newline = [&](int d) {
    out.push_back('\n');
    out.append(static_cast<std::size_t>(d), '\t');
  };
  switch (v.type()) {
    case ojson::value_t::object: {
      if (v.empty()) {
        out += "{}";
        return;
      }
      out.push_back('{');
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += indented ? "," : ", ";
        first = false;
        if (indented) newline(depth + 1);
        dump_string(it.key(), out);
        out += ": ";
        dump_value(it.value(), style, depth + 1, out);
      }
      if (indented) newline(depth);
      out.push_back('}');
      return;
    }
    case ojson::value_t::array: {
      if (v.empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      bool first = true;
      for (const auto& item : v) {
        if (!first) out += indented ? "," : ", ";
        first = false;
        if (indented) newline(depth + 1);
        dump_value(item, style, depth + 1, out);
      }
      if (indented) newline(depth);
      out.push_back(']');
      return;
    }
    case ojson::value_t::string:
      dump_string(v.get_ref<const std::string&>(), out);
      return;
    case ojson::value_t::number_float:
      out += format_double(v.get<double>());
      return;
    case ojson::value_t::number_integer:
      out += std::to_string(v.get<std::int64_t>());
      return;
    case ojson::value_t::number_unsigned:
      out += std::to_string(v.get<std::uint64_t>());
      return;
    case ojson::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      return;
    case ojson::value_t::null:
    case ojson::value_t::discarded:
      out += "null";
      return;
    case ojson::value_t::binary:
      throw FormatError("JSON value holds binary data, which has no JSON text form");
  }
}

// Replaces sentinel strings by the non-finite doubles they stand for.
void restore_non_finite(ojson& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (!s.empty() && s[0] == '\0') {
      if (s == kNaNValue) {
        v = std::numeric_limits<double>::quiet_NaN();
      } else if (s == kInfValue) {
        v = std::numeric_limits<double>::infinity();
      } else if (s == kNegInfValue) {
        v = -std::numeric_limits<double>::infinity();
      }
    }
  } else if (v.is_structured()) {
    for (auto& item : v) restore_non_finite(item);
  }
}

}  // namespace

std::string format_double(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  // Shortest round-trip digits, then laid out by Python's repr rules: positional when
  // -4 <= exponent < 16 (always with a fractional part), otherwise d[.ddd]e[+-]XX.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(res.ptr - buf));
  const bool negative = sci.front() == '-';
  if (negative) sci.remove_prefix(1);
  const auto epos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, epos)) {
    if (c != '.') digits.push_back(c);
  }
  const int exponent = std::stoi(std::string(sci.substr(epos + 1)));
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-exponent - 1), '0');
      out += digits;
    } else {
      const auto int_len = static_cast<std::size_t>(exponent) + 1;
      if (digits.size() <= int_len) {
        out += digits;
        out.append(int_len - digits.size(), '0');
        out += ".0";
      } else {
        out += digits.substr(0, int_len);
        out += '.';
        out += digits.substr(int_len);
      }
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    out += 'e';
    out += exponent < 0 ? '-' : '+';
    const int mag = exponent < 0 ? -exponent : exponent;
    if (mag < 10) out += '0';
    out += std::to_string(mag);
  }
  return out;
}

std::string dump_json(const nlohmann::ordered_json& value, JsonStyle style) {
  std::string out;
  dump_value(value, style, 0, out);
  return out;
}

nlohmann::ordered_json parse_json(std::string_view text, std::string_view file,
                                  std::string_view entry, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    detail::throw_format_error(file, entry,
                               "JSON text of " + std::to_string(text.size()) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(limits.max_bytes));
  }
  if (text.find(kSentinelPrefix) != std::string_view::npos) {
    detail::throw_format_error(file, entry,
                               "JSON text contains the reserved string \"\\u0000zanj:\"");
  }
  // One pass outside string literals: check the nesting depth and rewrite Python's non-finite
  // tokens. The copy is only made when such a token occurs.
  std::string rewritten;
  bool rewriting = false;
  std::size_t copied_upto = 0;
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limits.max_depth) {
        detail::throw_format_error(file, entry,
                                   "JSON nesting deeper than " + std::to_string(limits.max_depth) +
                                       " levels at byte " + std::to_string(i));
      }
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;
    } else if (c == 'N' || c == 'I' || (c == '-' && i + 1 < text.size() && text[i + 1] == 'I')) {
      std::string_view rest = text.substr(i);
      std::string_view replacement;
      std::size_t len = 0;
      if (rest.substr(0, 3) == "NaN") {
        replacement = kNaN, len = 3;
      } else if (rest.substr(0, 8) == "Infinity") {
        replacement = kInf, len = 8;
      } else if (rest.substr(0, 9) == "-Infinity") {
        replacement = kNegInf, len = 9;
      }
      if (len != 0) {
        if (!rewriting) {
          rewriting = true;
          rewritten.reserve(text.size() + 64);
        }
        rewritten.append(text.substr(copied_upto, i - copied_upto));
        rewritten.append(replacement);
        copied_upto = i + len;
        i += len - 1;
      }
    }
  }
  // JSON leaves duplicate keys to the reader and nlohmann keeps one silently: refused here, so
  // that no object (a tree node, a safetensors header, an index) can say two things at once.
  std::vector<std::unordered_set<std::string>> keys_seen;  // one set per open object
  const ojson::parser_callback_t refuse_duplicates = [&](int, ojson::parse_event_t event,
                                                         ojson& parsed) {
    if (event == ojson::parse_event_t::object_start) {
      keys_seen.emplace_back();
    } else if (event == ojson::parse_event_t::object_end) {
      keys_seen.pop_back();
    } else if (event == ojson::parse_event_t::key && !keys_seen.empty() &&
               !keys_seen.back().insert(parsed.get<std::string>()).second) {
      detail::throw_format_error(
          file, entry, "duplicate key \"" + parsed.get<std::string>() + "\" in a JSON object");
    }
    return true;
  };
  ojson result;
  try {
    if (rewriting) {
      rewritten.append(text.substr(copied_upto));
      result = ojson::parse(rewritten, refuse_duplicates);
      restore_non_finite(result);
    } else {
      result = ojson::parse(text, refuse_duplicates);
    }
  } catch (const nlohmann::json::exception& e) {
    detail::throw_format_error(file, entry, std::string("malformed JSON: ") + e.what());
  }
  return result;
}

}  // namespace zanj
