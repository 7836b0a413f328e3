// SPDX-License-Identifier: MIT
#include "configured_model/json_text.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

#include "configured_model/errors.hpp"
#include "json_object.hpp"

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

// Builds the parsed value in one pass, linear in its size: nlohmann's own parser inserts each
// key of an ordered object with a search of the keys before it (quadratic in an object's size),
// while the builder appends, keeping one hash set of the keys per open object. JSON leaves
// duplicate keys to the reader and nlohmann keeps the last silently: refused here, so that no
// object (a tree node, a safetensors header, an index) can say two things at once. Sentinel
// strings become the non-finite doubles they stand for.
class TreeBuilder : public nlohmann::json_sax<ojson> {
 public:
  TreeBuilder(ojson& root, std::string_view file, std::string_view entry)
      : root_(root), file_(file), entry_(entry) {}

  bool null() override { return add(ojson(nullptr)); }
  bool boolean(bool v) override { return add(ojson(v)); }
  bool number_integer(number_integer_t v) override { return add(ojson(v)); }
  bool number_unsigned(number_unsigned_t v) override { return add(ojson(v)); }
  bool number_float(number_float_t v, const string_t&) override { return add(ojson(v)); }
  bool string(string_t& v) override {
    if (!v.empty() && v[0] == '\0') {
      if (v == kNaNValue) return add(ojson(std::numeric_limits<double>::quiet_NaN()));
      if (v == kInfValue) return add(ojson(std::numeric_limits<double>::infinity()));
      if (v == kNegInfValue) return add(ojson(-std::numeric_limits<double>::infinity()));
    }
    return add(ojson(std::move(v)));
  }
  bool binary(binary_t&) override { return false; }  // not produced by text JSON
  bool start_object(std::size_t) override {
    open(ojson::object());
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second) {
      detail::throw_format_error(file_, entry_, "duplicate key \"" + k + "\" in a JSON object");
    }
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    open(ojson::array());
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    detail::throw_format_error(file_, entry_, "malformed JSON: " + detail::json_error_text(e));
  }

 private:
  // Places a finished value in the open container (or at the root) and returns where it lives.
  ojson* place(ojson&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    ojson& parent = *stack_.back();
    if (parent.is_array()) {
      auto& items = parent.get_ref<ojson::array_t&>();
      items.push_back(std::move(v));
      return &items.back();
    }
    auto& members = parent.get_ref<ojson::object_t&>();
    members.Container::emplace_back(std::move(key_), std::move(v));  // unique: checked in key()
    return &members.back().second;
  }
  bool add(ojson&& v) {
    place(std::move(v));
    return true;
  }
  void open(ojson&& container) { stack_.push_back(place(std::move(container))); }

  ojson& root_;
  std::string_view file_, entry_;
  std::vector<ojson*> stack_;  // the open containers; pointers stay valid: only the last grows
  std::vector<std::unordered_set<std::string>> keys_;
  std::string key_;
};

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
  ojson result;
  TreeBuilder builder(result, file, entry);
  try {
    if (rewriting) rewritten.append(text.substr(copied_upto));
    const std::string_view input = rewriting ? std::string_view(rewritten) : text;
    ojson::sax_parse(input.begin(), input.end(), &builder);
  } catch (const nlohmann::json::exception& e) {
    detail::throw_format_error(file, entry, "malformed JSON: " + detail::json_error_text(e));
  }
  return result;
}

}  // namespace zanj
