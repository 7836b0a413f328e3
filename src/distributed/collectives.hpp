// SPDX-License-Identifier: MIT
// Bytes and tensors exchanged over a c10d::ProcessGroup, with the group's failures (a peer that
// died, a timeout) turned into zanj::IoError naming what was being exchanged.
#pragma once

#include <string>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <vector>

namespace zanj::detail {

/// Every rank's `mine`, in rank order (two allgathers: the lengths, then the padded bytes).
/// @throws IoError when the group fails.
std::vector<std::string> allgather_bytes(c10d::ProcessGroup& group, const std::string& mine,
                                         const char* what);

/// `bytes` of rank `root`, on every rank.  @throws IoError when the group fails.
std::string broadcast_bytes(c10d::ProcessGroup& group, int root, const std::string& bytes,
                            const char* what);

/// Broadcasts `tensor` (contiguous, on every rank the same shape and dtype) from `root` in place.
/// @throws IoError when the group fails.
void broadcast_tensor(c10d::ProcessGroup& group, int root, at::Tensor& tensor, const char* what);

}  // namespace zanj::detail
