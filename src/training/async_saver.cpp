// SPDX-License-Identifier: MIT
// Background saves: the caller's thread snapshots the tree into reused staging tensors, one
// writer thread runs zanj::save() on the snapshot.
#include "configured_model/async_saver.hpp"

#include <torch/torch.h>

#include <cstring>

#include "../parallel.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/file.hpp"
#include "configured_model/logging.hpp"

namespace zanj {

struct SaveHandle::State {
  std::string path;
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
  mutable bool observed = false;  // someone saw the outcome through wait()
};

void SaveHandle::wait() const {
  if (!state_) return;
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->cv.wait(lock, [&] { return state_->done; });
  state_->observed = true;
  if (state_->error) std::rethrow_exception(state_->error);
}

bool SaveHandle::done() const {
  if (!state_) return true;
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->done;
}

const std::string& SaveHandle::path() const {
  static const std::string kNone;
  return state_ ? state_->path : kNone;
}

// One staging copy of the state, and the save currently using it.
struct AsyncSaver::Slot {
  std::vector<at::Tensor> staging;
  SaveHandle user;
};

struct AsyncSaver::Job {
  Node tree;  // its tensors are a slot's staging tensors
  std::function<void(const Node&)> write;
  std::shared_ptr<SaveHandle::State> state;
};

AsyncSaver::AsyncSaver(AsyncOptions options) : options_(options) {
  if (options_.max_in_flight == 0) {
    throw UsageError("zanj::AsyncSaver: max_in_flight must be at least 1");
  }
  worker_ = std::thread([this] { run(); });
}

AsyncSaver::~AsyncSaver() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();  // the writer finishes everything queued first
  for (const auto& h : in_flight_) {
    std::lock_guard<std::mutex> lock(h.state_->mu);
    if (h.state_->error && !h.state_->observed) {
      try {
        std::rethrow_exception(h.state_->error);
      } catch (const std::exception& e) {
        logger()->error("{}: background save failed and nobody waited for it: {}", h.state_->path,
                        e.what());
      } catch (...) {
        logger()->error("{}: background save failed and nobody waited for it", h.state_->path);
      }
    }
  }
}

void AsyncSaver::run() {
  for (;;) {
    std::unique_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to write
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    std::exception_ptr error;
    try {
      job->write(job->tree);
    } catch (...) {
      error = std::current_exception();
    }
    job->tree = Node();  // drop the staging references before the slot is handed out again
    {
      std::lock_guard<std::mutex> lock(job->state->mu);
      job->state->error = error;
      job->state->done = true;
    }
    job->state->cv.notify_all();
  }
}

void AsyncSaver::rethrow_unobserved() {
  std::exception_ptr first;
  std::vector<SaveHandle> still;
  for (auto& h : in_flight_) {
    std::lock_guard<std::mutex> lock(h.state_->mu);
    if (!h.state_->done) {
      still.push_back(h);
    } else if (h.state_->error && !h.state_->observed && !first) {
      h.state_->observed = true;
      first = h.state_->error;
    }
  }
  in_flight_ = std::move(still);
  if (first) std::rethrow_exception(first);
}

AsyncSaver::Slot& AsyncSaver::free_slot() {
  for (;;) {
    for (auto& s : slots_) {
      if (s->user.done()) return *s;
    }
    if (slots_.size() < options_.max_in_flight) {
      slots_.push_back(std::make_unique<Slot>());
      return *slots_.back();
    }
    // Every slot is being written: wait for the oldest save, without consuming its error.
    const SaveHandle oldest = in_flight_.front();
    std::unique_lock<std::mutex> lock(oldest.state_->mu);
    oldest.state_->cv.wait(lock, [&] { return oldest.state_->done; });
  }
}

namespace {

// A copy of contiguous CPU bytes, done later and in pieces on several cores.
struct Copy {
  char* dst;
  const char* src;
  std::size_t n;
};

// Replaces every tensor of `n` by a staging copy (slot tensor `i`, reused when its shape and
// dtype still fit). Contiguous CPU tensors are queued in `copies`; others are copied here.
void stage(Node& n, std::vector<at::Tensor>& staging, std::size_t& i, std::uint64_t& allocations,
           std::vector<Copy>& copies) {
  if (n.is_tensor()) {
    const at::Tensor src = n.tensor();
    if (staging.size() <= i) staging.emplace_back();
    at::Tensor& dst = staging[i++];
    if (!dst.defined() || dst.sizes() != src.sizes() || dst.scalar_type() != src.scalar_type()) {
      // Pinned memory makes the copy from a GPU a straight DMA.
      dst =
          at::empty(src.sizes(), at::TensorOptions()
                                     .dtype(src.scalar_type())
                                     .pinned_memory(src.is_cuda() && torch::cuda::is_available()));
      ++allocations;
    }
    if (src.device().is_cpu() && src.is_contiguous() && src.layout() == at::kStrided &&
        !src.is_quantized() && !src.is_conj() && !src.is_neg()) {
      const std::size_t bytes = static_cast<std::size_t>(src.numel()) * src.element_size();
      if (bytes)
        copies.push_back(
            {static_cast<char*>(dst.data_ptr()), static_cast<const char*>(src.data_ptr()), bytes});
    } else {
      dst.copy_(src);
    }
    const bool keep = n.keep_inline();
    n = Node(dst);
    n.set_keep_inline(keep);
  } else if (n.is_list()) {
    for (auto& item : n.as_list()) stage(item, staging, i, allocations, copies);
  } else if (n.is_dict()) {
    for (auto& kv : n.as_dict()) stage(kv.second, staging, i, allocations, copies);
  }
}

}  // namespace

void AsyncSaver::reserve(const Node& tree) {
  rethrow_unobserved();
  Slot& slot = free_slot();
  Node shaped = tree;
  std::size_t i = 0;
  std::vector<Copy> copies;
  stage(shaped, slot.staging, i, allocations_, copies);
  slot.staging.resize(i);
  // Touch every page now, on every core, instead of in the first save's copy.
  constexpr std::size_t kPiece = 4 << 20;
  std::vector<Copy> pieces;
  for (const Copy& c : copies) {
    for (std::size_t at = 0; at < c.n; at += kPiece) {
      pieces.push_back({c.dst + at, nullptr, std::min(kPiece, c.n - at)});
    }
  }
  detail::run_in_order(
      pieces.size(), detail::worker_count(0, pieces.size()),
      [&](std::size_t k) { std::memset(pieces[k].dst, 0, pieces[k].n); }, [](std::size_t) {});
}

SaveHandle AsyncSaver::save(const Node& tree, std::string path, const SaveOptions& options,
                            std::function<void()> then) {
  const std::string target = path;
  return save_with(tree, std::move(path),
                   [target, options, then = std::move(then)](const Node& snapshot) {
                     zanj::save(snapshot, target, options);
                     if (then) then();
                   });
}

SaveHandle AsyncSaver::save_with(const Node& tree, std::string label,
                                 std::function<void(const Node&)> write) {
  rethrow_unobserved();
  Slot& slot = free_slot();
  rethrow_unobserved();  // the save waited for may have failed
  auto job = std::make_unique<Job>();
  job->tree = tree;
  {
    torch::NoGradGuard no_grad;
    std::size_t i = 0;
    std::vector<Copy> copies;
    stage(job->tree, slot.staging, i, allocations_, copies);
    slot.staging.resize(i);  // a smaller state frees what it no longer uses
    // The copies, in 4 MiB pieces on every core: one core alone does not reach the memory
    // bandwidth, and this is the whole of the caller's stall.
    constexpr std::size_t kPiece = 4 << 20;
    std::vector<Copy> pieces;
    for (const Copy& c : copies) {
      for (std::size_t at = 0; at < c.n; at += kPiece) {
        pieces.push_back({c.dst + at, c.src + at, std::min(kPiece, c.n - at)});
      }
    }
    detail::run_in_order(
        pieces.size(), detail::worker_count(0, pieces.size()),
        [&](std::size_t k) { std::memcpy(pieces[k].dst, pieces[k].src, pieces[k].n); },
        [](std::size_t) {});
  }
  job->write = std::move(write);
  job->state = std::make_shared<SaveHandle::State>();
  job->state->path = std::move(label);
  SaveHandle handle(job->state);
  slot.user = handle;
  in_flight_.push_back(handle);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
  return handle;
}

void AsyncSaver::wait() {
  for (const auto& h : in_flight_) {
    std::unique_lock<std::mutex> lock(h.state_->mu);
    h.state_->cv.wait(lock, [&] { return h.state_->done; });
  }
  rethrow_unobserved();
}

std::uint64_t AsyncSaver::staging_bytes() const {
  std::uint64_t n = 0;
  for (const auto& s : slots_) {
    for (const auto& t : s->staging) n += static_cast<std::uint64_t>(t.numel()) * t.element_size();
  }
  return n;
}

}  // namespace zanj
