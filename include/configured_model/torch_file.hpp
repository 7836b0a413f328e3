// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include "configured_model/archive.hpp"
#include "configured_model/export.hpp"
#include "configured_model/node.hpp"
#include "configured_model/options.hpp"
#include "configured_model/state_dict.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Reads a file written by Python's `torch.save` (the zip layout of torch >= 1.6) without
/// running anything it says: a restricted unpickler accepts dicts, `OrderedDict`s, lists,
/// tuples, strings, numbers, booleans, None, tensors and parameters of every dtype torch has
/// (incl. bfloat16, half, bool, complex), `torch.Size`, dtypes and devices, and refuses every
/// other global with an UnsafeContentError naming it (PyTorch's `weights_only=True` policy).
///
/// A state dict comes back as a dict of tensors; a nested checkpoint
/// (`{"model": sd, "optimizer": osd, "epoch": 3}`) as the same tree (int dict keys, as in an
/// optimizer's `state`, become their decimal text). Views that shared a storage in Python share
/// it here, with their offsets and strides. Every storage entry's CRC-32 is checked unless
/// `options.check_crc` is off; with `options.mmap`, stored, aligned storages alias a
/// copy-on-write mapping of the file instead of being read.
///
/// \code
///   zanj::Node ckpt = zanj::read_torch("checkpoint.pt");
///   int64_t epoch = ckpt.at("epoch").scalar().get<int64_t>();
///   torch::Tensor w = ckpt.at("model").at("fc1.weight").tensor();
/// \endcode
/// @throws IoError if the file cannot be read; FormatError if it is not a torch.save zip (a
///         legacy pre-1.6 file is named as such), is malformed or lies about its storages;
///         UnsafeContentError for a forbidden global.
Node read_torch(const std::string& path, const ReadOptions& options = {});

/// read_torch() of an archive already open (e.g. one held in memory).
Node read_torch(const ArchiveReader& archive, const ReadOptions& options = {});

/// Writes a tree as Python's `torch.save` would: a zip `archive/data.pkl` (pickle protocol 2,
/// dicts as `collections.OrderedDict`) plus one stored entry per distinct storage, so tensors
/// that share a storage still share it after `torch.load` (which reads the file with
/// `weights_only=True` as well). Crash-safe like every save here.
/// @throws IoError if writing fails; FormatError for a value pickle cannot hold.
void save_torch(const Node& root, const std::string& path);

/// Reads every tensor of a libtorch archive (`torch::save` of a module or an OutputArchive),
/// naming nested archives with dots ("net.0.weight").
/// @throws FormatError if the file is not a libtorch archive.
StateDict read_libtorch(const std::string& path);

/// Writes tensors as a libtorch archive that `torch::load(module, path)` loads into a module
/// with the same parameter and buffer names ("net.0.weight" becomes archive net/0/weight).
/// @throws IoError if writing fails.
void save_libtorch(const StateDict& tensors, const std::string& path);

namespace detail {
/// read_torch(); with `map_to_copy`, stored storages alias a mapping of the file (CRC-checked
/// when `options.check_crc`) for a caller that copies them at once.
Node read_torch(const ArchiveReader& archive, const ReadOptions& options, bool map_to_copy);
Node read_torch(const std::string& path, const ReadOptions& options, bool map_to_copy);
}  // namespace detail

}  // namespace zanj

CONFIGURED_MODEL_API_END
