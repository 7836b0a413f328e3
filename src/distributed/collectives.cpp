// SPDX-License-Identifier: MIT
#include "collectives.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>

#include "configured_model/errors.hpp"

namespace zanj::detail {
namespace {

template <class F>
void run(c10d::ProcessGroup& group, const char* what, F&& f) {
  try {
    f();
  } catch (const zanj::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw IoError("process group (rank " + std::to_string(group.getRank()) + " of " +
                  std::to_string(group.getSize()) + "): " + what +
                  " failed (a rank died, failed or timed out): " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw IoError("process group (rank " + std::to_string(group.getRank()) + " of " +
                  std::to_string(group.getSize()) + "): " + what +
                  " failed (a rank died, failed or timed out): " + e.what());
  }
}

}  // namespace

std::vector<std::string> allgather_bytes(c10d::ProcessGroup& group, const std::string& mine,
                                         const char* what) {
  const int n = group.getSize();
  std::vector<std::string> result(static_cast<std::size_t>(n));
  run(group, what, [&] {
    std::vector<at::Tensor> size_in{
        at::full({1}, static_cast<std::int64_t>(mine.size()), at::kLong)};
    std::vector<std::vector<at::Tensor>> size_out(1);
    for (int r = 0; r < n; ++r) size_out[0].push_back(at::empty({1}, at::kLong));
    group.allgather(size_out, size_in)->wait();
    std::int64_t longest = 1;  // Gloo wants equal, non-empty buffers
    for (const auto& t : size_out[0]) longest = std::max(longest, t.item<std::int64_t>());
    std::vector<at::Tensor> in{at::zeros({longest}, at::kByte)};
    std::memcpy(in[0].data_ptr(), mine.data(), mine.size());
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < n; ++r) out[0].push_back(at::empty({longest}, at::kByte));
    group.allgather(out, in)->wait();
    for (int r = 0; r < n; ++r) {
      const auto len =
          static_cast<std::size_t>(size_out[0][static_cast<std::size_t>(r)].item<std::int64_t>());
      result[static_cast<std::size_t>(r)].assign(
          static_cast<const char*>(out[0][static_cast<std::size_t>(r)].data_ptr()), len);
    }
  });
  return result;
}

std::string broadcast_bytes(c10d::ProcessGroup& group, int root, const std::string& bytes,
                            const char* what) {
  std::string result;
  run(group, what, [&] {
    std::vector<at::Tensor> size{at::full({1}, static_cast<std::int64_t>(bytes.size()), at::kLong)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    group.broadcast(size, options)->wait();
    const auto len = size[0].item<std::int64_t>();
    std::vector<at::Tensor> data{at::zeros({std::max<std::int64_t>(len, 1)}, at::kByte)};
    if (group.getRank() == root) std::memcpy(data[0].data_ptr(), bytes.data(), bytes.size());
    group.broadcast(data, options)->wait();
    result.assign(static_cast<const char*>(data[0].data_ptr()), static_cast<std::size_t>(len));
  });
  return result;
}

void broadcast_tensor(c10d::ProcessGroup& group, int root, at::Tensor& tensor, const char* what) {
  run(group, what, [&] {
    if (tensor.numel() == 0) return;
    // As bytes: Gloo does not broadcast every dtype (bool, bfloat16, complex).
    const auto nbytes = static_cast<std::int64_t>(tensor.numel() * tensor.element_size());
    std::vector<at::Tensor> data{at::from_blob(tensor.data_ptr(), {nbytes}, at::kByte)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    group.broadcast(data, options)->wait();
  });
}

}  // namespace zanj::detail
