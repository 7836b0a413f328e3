// SPDX-License-Identifier: MIT
#include "configured_model/errors.hpp"

namespace zanj::detail {

std::string message(std::string_view file, std::string_view entry, std::string_view what) {
  std::string out;
  out.reserve(file.size() + entry.size() + what.size() + 4);
  if (!file.empty()) {
    out.append(file).append(": ");
  }
  if (!entry.empty()) {
    out.append(entry).append(": ");
  }
  out.append(what);
  return out;
}

std::string shape_text(c10::IntArrayRef shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return out + "]";
}

void throw_io_error(std::string_view file, std::string_view entry, std::string_view what) {
  throw IoError(message(file, entry, what));
}

void throw_format_error(std::string_view file, std::string_view entry, std::string_view what) {
  throw FormatError(message(file, entry, what));
}

}  // namespace zanj::detail
