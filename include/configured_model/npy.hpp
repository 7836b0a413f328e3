// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// The 6 bytes every `.npy` file starts with.
inline constexpr std::string_view kNpyMagic{"\x93NUMPY", 6};
/// Data in the `.npy` files we write starts at a multiple of this many bytes.
inline constexpr std::size_t kNpyAlignment = 64;
/// Largest header (the Python dict literal) accepted on read.
inline constexpr std::size_t kMaxNpyHeaderBytes = 1 << 20;

/// The parsed header of a `.npy` file.
struct NpyHeader {
  int major_version = 1;       ///< 1, 2 or 3
  std::string descr;           ///< numpy type string, e.g. "<f4"
  bool fortran_order = false;  ///< column-major data
  std::vector<std::int64_t> shape;
  std::size_t data_offset = 0;  ///< where the data starts
  std::size_t data_bytes = 0;   ///< product(shape) * item size
};

/// Encodes a tensor as a complete `.npy` file: format 1.0 (2.0 only when the header needs it),
/// C order, little endian, data starting at a multiple of kNpyAlignment.
/// Every torch dtype is supported; bfloat16, which numpy lacks, is written as exact `<f4` values.
/// The tensor may live on any device and have any strides.
std::string encode_npy(const at::Tensor& tensor);

/// A tensor's `.npy` file in two pieces, to be written one after the other without a copy.
struct NpyPieces {
  std::string header;  ///< as npy_header() makes it; its length is a multiple of kNpyAlignment
  at::Tensor data;     ///< contiguous CPU tensor holding the data (the input itself when it
                       ///< already is one of a numpy dtype; else a converted copy of it alone)
  /// The data's bytes (they alias `data`).
  std::string_view data_bytes() const;
};

/// Splits a tensor into header and data for streaming; encode_npy() is their concatenation.
NpyPieces npy_pieces(const at::Tensor& tensor);

/// Builds just the header (magic, version, length, dict, padding) for `descr` and `shape`.
std::string npy_header(std::string_view descr, const std::vector<std::int64_t>& shape);

/// numpy's type string for a torch dtype as we write it (bfloat16 gives "<f4").
std::string npy_descr(c10::ScalarType dtype);

/// Parses and validates a `.npy` header: magic, version 1/2/3, the dict literal, and that the
/// data that follows holds exactly product(shape) items.
/// @throws FormatError naming `file` and `entry` on any lie or truncation.
NpyHeader parse_npy_header(std::string_view bytes, std::string_view file = {},
                           std::string_view entry = {});

/// The same for the first bytes of an entry of `entry_bytes` bytes in all: `bytes` must hold the
/// whole header (any data after it is ignored); the data's length is checked against the
/// entry's size instead.
NpyHeader parse_npy_header(std::string_view bytes, std::uint64_t entry_bytes,
                           std::string_view file = {}, std::string_view entry = {});

/// How many leading bytes of a `.npy` file its header takes, read from its first 12 bytes; 0
/// when they are not a `.npy` prefix (parse_npy_header() then says why).
std::size_t npy_header_length(std::string_view first_bytes);

/// The tensor dtype whose memory layout the data of `header` already has (C order, native
/// little-endian, no widening or validation needed), or nullopt when decoding must convert.
std::optional<c10::ScalarType> npy_raw_dtype(const NpyHeader& header);

/// Decodes a whole `.npy` file into a new contiguous CPU tensor. Reads both byte orders and
/// Fortran order. `u2` and `u4` are widened exactly to int32 and int64 (torch has no such
/// dtypes); `u8`, object (`O`) and any other type are refused.
/// @throws FormatError naming `file` and `entry`.
at::Tensor decode_npy(std::string_view bytes, std::string_view file = {},
                      std::string_view entry = {});

}  // namespace zanj

CONFIGURED_MODEL_API_END
