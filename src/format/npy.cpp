// SPDX-License-Identifier: MIT
#include "configured_model/npy.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>

#include "configured_model/errors.hpp"
#include "shape_rule.hpp"

namespace zanj {
namespace {

struct DescrInfo {
  c10::ScalarType stored;  // dtype of the bytes as laid out in the file
  c10::ScalarType result;  // dtype of the tensor we return (differs only when widening)
  std::size_t item_size;
  std::size_t swap_unit;  // byte-swap granularity for big-endian data (1: none)
};

[[noreturn]] void fail(std::string_view file, std::string_view entry, const std::string& what) {
  detail::throw_format_error(file, entry, what);
}

DescrInfo descr_info(const std::string& descr, std::string_view file, std::string_view entry) {
  if (descr.size() < 2) fail(file, entry, "unsupported .npy descr '" + descr + "'");
  const char order = descr[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    fail(file, entry, "unsupported .npy descr '" + descr + "' (expected a byte-order prefix)");
  }
  const std::string code = descr.substr(1);
  using S = c10::ScalarType;
  static const std::pair<const char*, DescrInfo> kTable[] = {
      {"b1", {S::Byte, S::Bool, 1, 1}},  // bytes other than 0/1 must not reach a bool
      {"u1", {S::Byte, S::Byte, 1, 1}},
      {"i1", {S::Char, S::Char, 1, 1}},
      {"i2", {S::Short, S::Short, 2, 2}},
      {"i4", {S::Int, S::Int, 4, 4}},
      {"i8", {S::Long, S::Long, 8, 8}},
      {"u2", {S::Short, S::Int, 2, 2}},  // widened exactly
      {"u4", {S::Int, S::Long, 4, 4}},   // widened exactly
      {"f2", {S::Half, S::Half, 2, 2}},
      {"f4", {S::Float, S::Float, 4, 4}},
      {"f8", {S::Double, S::Double, 8, 8}},
      {"c8", {S::ComplexFloat, S::ComplexFloat, 8, 4}},
      {"c16", {S::ComplexDouble, S::ComplexDouble, 16, 8}},
  };
  for (const auto& [name, info] : kTable) {
    if (code == name) {
      return info;
    }
  }
  if (code[0] == 'O') {
    fail(file, entry, "object arrays (descr '" + descr + "') need pickle and are refused");
  }
  fail(file, entry,
       "unsupported .npy descr '" + descr + "'" +
           (code == "u8" ? " (torch has no uint64 dtype)" : ""));
}

bool big_endian_descr(const std::string& descr) { return descr[0] == '>'; }

// A tiny parser for the Python dict literal numpy writes:
//   {'descr': '<f4', 'fortran_order': False, 'shape': (16, 20), }
class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string_view file, std::string_view entry)
      : text_(text), file_(file), entry_(entry) {}

  void parse(NpyHeader& h) {
    bool has_descr = false, has_order = false, has_shape = false;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      const std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        if (has_descr) error("duplicate key 'descr'");
        skip_ws();
        h.descr = string_literal();
        has_descr = true;
      } else if (key == "fortran_order") {
        if (has_order) error("duplicate key 'fortran_order'");
        h.fortran_order = boolean();
        has_order = true;
      } else if (key == "shape") {
        if (has_shape) error("duplicate key 'shape'");
        h.shape = tuple();
        has_shape = true;
      } else {
        error("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != '}') {
        error("expected ',' or '}'");
      }
    }
    skip_ws();
    if (pos_ != text_.size()) error("trailing characters after the dict");
    if (!has_descr || !has_order || !has_shape) {
      error("missing key (expected 'descr', 'fortran_order' and 'shape')");
    }
  }

 private:
  [[noreturn]] void error(const std::string& what) {
    fail(file_, entry_,
         "bad .npy header: " + what + " at offset " + std::to_string(pos_) + " in \"" +
             std::string(text_.substr(0, 200)) + "\"");
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string string_literal() {
    skip_ws();
    const char quote = peek();
    if (quote != '\'' && quote != '"') error("expected a string");
    const auto end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) error("unterminated string");
    std::string s(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return s;
  }
  bool boolean() {
    skip_ws();
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    error("expected True or False");
  }
  std::vector<std::int64_t> tuple() {
    std::vector<std::int64_t> dims;
    expect('(');
    while (true) {
      skip_ws();
      if (peek() == ')') {
        ++pos_;
        return dims;
      }
      if (peek() < '0' || peek() > '9') error("expected a non-negative integer dimension");
      std::int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (INT64_MAX - 9) / 10) error("dimension too large");
        v = v * 10 + (peek() - '0');
        ++pos_;
      }
      if (peek() == 'L') ++pos_;  // Python 2 longs
      dims.push_back(v);
      if (dims.size() > 64) error("more than 64 dimensions");
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        error("expected ',' or ')'");
      }
    }
  }

  std::string_view text_;
  std::string_view file_;
  std::string_view entry_;
  std::size_t pos_ = 0;
};

void byte_swap(char* data, std::size_t bytes, std::size_t unit) {
  for (std::size_t i = 0; i + unit <= bytes; i += unit) {
    std::reverse(data + i, data + i + unit);
  }
}

std::string shape_literal(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  s += ")";
  return s;
}

}  // namespace

std::string npy_descr(c10::ScalarType dtype) {
  using S = c10::ScalarType;
  switch (dtype) {
    case S::Bool:
      return "|b1";
    case S::Byte:
      return "|u1";
    case S::Char:
      return "|i1";
    case S::Short:
      return "<i2";
    case S::Int:
      return "<i4";
    case S::Long:
      return "<i8";
    case S::Half:
      return "<f2";
    case S::BFloat16:  // no numpy dtype: exact float32 values
    case S::Float:
      return "<f4";
    case S::Double:
      return "<f8";
    case S::ComplexFloat:
      return "<c8";
    case S::ComplexDouble:
      return "<c16";
    default:
      throw FormatError(std::string("dtype ") + c10::toString(dtype) + " has no .npy encoding");
  }
}

std::string npy_header(std::string_view descr, const std::vector<std::int64_t>& shape) {
  std::string dict = "{'descr': '" + std::string(descr) +
                     "', 'fortran_order': False, 'shape': " + shape_literal(shape) + ", }";
  // magic(6) + version(2) + length(2 or 4) + dict + padding + '\n' must be a multiple of 64.
  std::size_t prefix = 10;
  std::size_t total =
      ((prefix + dict.size() + 1 + kNpyAlignment - 1) / kNpyAlignment) * kNpyAlignment;
  char major = 1;
  if (total - prefix > 65535) {
    prefix = 12;
    major = 2;
    total = ((prefix + dict.size() + 1 + kNpyAlignment - 1) / kNpyAlignment) * kNpyAlignment;
  }
  const std::size_t header_len = total - prefix;
  dict.append(header_len - dict.size() - 1, ' ');
  dict.push_back('\n');

  std::string out(kNpyMagic);
  out.push_back(major);
  out.push_back(0);
  if (major == 1) {
    out.push_back(static_cast<char>(header_len & 0xff));
    out.push_back(static_cast<char>((header_len >> 8) & 0xff));
  } else {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((header_len >> (8 * i)) & 0xff));
  }
  out += dict;
  return out;
}

std::string_view NpyPieces::data_bytes() const {
  if (!data.defined() || data.numel() == 0) return {};
  return {static_cast<const char*>(data.data_ptr()),
          static_cast<std::size_t>(data.numel()) * data.element_size()};
}

NpyPieces npy_pieces(const at::Tensor& tensor) {
  // Only what cannot be written as it is gets copied, one tensor at a time.
  at::Tensor t = tensor.detach().to(at::kCPU);
  if (t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);
  t = t.contiguous();
  return {npy_header(npy_descr(t.scalar_type()), t.sizes().vec()), t};
}

std::string encode_npy(const at::Tensor& tensor) {
  const NpyPieces pieces = npy_pieces(tensor);
  std::string out = pieces.header;
  out.append(pieces.data_bytes());
  return out;
}

std::optional<c10::ScalarType> npy_raw_dtype(const NpyHeader& header) {
  if (header.fortran_order && header.shape.size() > 1) return std::nullopt;
  if (header.descr.empty() || header.descr[0] == '>') return std::nullopt;
  const DescrInfo info = descr_info(header.descr, {}, {});
  if (info.stored != info.result) return std::nullopt;  // widening or bool validation needed
  return info.result;
}

std::size_t npy_header_length(std::string_view bytes) {
  if (bytes.size() < 12 || bytes.substr(0, 6) != kNpyMagic) return 0;
  const auto u8 = [&](std::size_t i) {
    return static_cast<std::size_t>(static_cast<unsigned char>(bytes[i]));
  };
  switch (bytes[6]) {
    case 1:
      return 10 + (u8(8) | (u8(9) << 8));
    case 2:
    case 3:
      return 12 + (u8(8) | (u8(9) << 8) | (u8(10) << 16) | (u8(11) << 24));
    default:
      return 0;
  }
}

NpyHeader parse_npy_header(std::string_view bytes, std::string_view file, std::string_view entry) {
  return parse_npy_header(bytes, bytes.size(), file, entry);
}

NpyHeader parse_npy_header(std::string_view bytes, std::uint64_t entry_bytes, std::string_view file,
                           std::string_view entry) {
  if (bytes.size() < 10 || bytes.substr(0, 6) != kNpyMagic) {
    fail(file, entry, "not a .npy file (bad magic, expected \\x93NUMPY)");
  }
  NpyHeader h;
  h.major_version = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len = 0;
  std::size_t prefix = 0;
  const auto u8 = [&](std::size_t i) {
    return static_cast<std::size_t>(static_cast<unsigned char>(bytes[i]));
  };
  if (h.major_version == 1) {
    prefix = 10;
    header_len = u8(8) | (u8(9) << 8);
  } else if (h.major_version == 2 || h.major_version == 3) {
    if (bytes.size() < 12) fail(file, entry, ".npy header truncated");
    prefix = 12;
    header_len = u8(8) | (u8(9) << 8) | (u8(10) << 16) | (u8(11) << 24);
  } else {
    fail(file, entry,
         "unsupported .npy version " + std::to_string(h.major_version) + " (expected 1, 2 or 3)");
  }
  if (header_len > kMaxNpyHeaderBytes) {
    fail(file, entry,
         ".npy header of " + std::to_string(header_len) + " bytes exceeds the limit of " +
             std::to_string(kMaxNpyHeaderBytes));
  }
  if (bytes.size() < prefix + header_len) {
    fail(file, entry,
         ".npy header truncated (expected " + std::to_string(header_len) + " header bytes, found " +
             std::to_string(bytes.size() - prefix) + ")");
  }
  HeaderParser(bytes.substr(prefix, header_len), file, entry).parse(h);
  const DescrInfo info = descr_info(h.descr, file, entry);
  // The product of the non-zero dimensions must fit as well: torch refuses such shapes even
  // when another dimension is 0 (found by fuzzing: shape (0, 8e17, 6, 4)).
  const auto size = detail::shape_bytes(h.shape, info.item_size);
  if (!size) fail(file, entry, "shape " + shape_literal(h.shape) + " overflows");
  h.data_bytes = static_cast<std::size_t>(*size);
  h.data_offset = prefix + header_len;
  const std::uint64_t available =
      std::max<std::uint64_t>(entry_bytes, bytes.size()) - h.data_offset;
  if (available != h.data_bytes) {
    fail(file, entry,
         "header says shape " + shape_literal(h.shape) + " of '" + h.descr + "' (expected " +
             std::to_string(h.data_bytes) + " data bytes, found " + std::to_string(available) +
             ")");
  }
  return h;
}

at::Tensor decode_npy(std::string_view bytes, std::string_view file, std::string_view entry) {
  const NpyHeader h = parse_npy_header(bytes, file, entry);
  const DescrInfo info = descr_info(h.descr, file, entry);
  std::vector<std::int64_t> stored_shape = h.shape;
  if (h.fortran_order) std::reverse(stored_shape.begin(), stored_shape.end());
  at::Tensor t = at::empty(stored_shape, at::TensorOptions().dtype(info.stored));
  if (h.data_bytes) {
    auto* dst = static_cast<char*>(t.data_ptr());
    std::memcpy(dst, bytes.data() + h.data_offset, h.data_bytes);
    if (big_endian_descr(h.descr) && info.swap_unit > 1)
      byte_swap(dst, h.data_bytes, info.swap_unit);
  }
  if (info.result == c10::ScalarType::Bool) {
    t = t.ne(0);
  } else if (info.result != info.stored) {
    // u2/u4 were read into the signed type of the same width; reinterpret as unsigned by masking.
    const std::int64_t mask = info.item_size == 2 ? 0xFFFF : 0xFFFFFFFFLL;
    t = t.to(info.result).bitwise_and(mask);
  }
  if (h.fortran_order && h.shape.size() > 1) {
    std::vector<std::int64_t> dims(h.shape.size());
    for (std::size_t i = 0; i < dims.size(); ++i)
      dims[i] = static_cast<std::int64_t>(dims.size() - 1 - i);
    t = t.permute(dims).contiguous();
  }
  return t;
}

}  // namespace zanj
