// SPDX-License-Identifier: MIT
// Running independent jobs (inflating or deflating entries and chunks) on the available cores,
// while the calling thread consumes their results in order.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace zanj::detail {

/// Worker threads for `requested` (0: one per core), never more than `jobs`, at least 1.
inline std::size_t worker_count(std::size_t requested, std::size_t jobs) {
  std::size_t n = requested ? requested : std::max(1u, std::thread::hardware_concurrency());
  return std::max<std::size_t>(1, std::min(n, jobs));
}

/// Runs job(0) .. job(n-1) on `threads` worker threads (taken in index order) and calls
/// done(i) on the calling thread for i = 0, 1, ... as soon as job i and all before it finished,
/// so results can be written or reported in order while later jobs still run. The first
/// exception (of a job, in index order, or of done) stops the handing out of new jobs, is
/// rethrown after every started job has ended, and done() is not called for that job or later
/// ones. With one thread everything runs on the calling thread. With `max_ahead` > 0, job i
/// starts only once done(i - max_ahead) has returned, so at most `max_ahead` results wait at
/// a time and they can live in `max_ahead` buffers reused round robin (slot i % max_ahead).
inline void run_in_order(std::size_t n, std::size_t threads,
                         const std::function<void(std::size_t)>& job,
                         const std::function<void(std::size_t)>& done, std::size_t max_ahead = 0) {
  if (n == 0) return;
  if (threads <= 1 || n == 1) {
    for (std::size_t i = 0; i < n; ++i) {
      job(i);
      done(i);
    }
    return;
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<char> finished(n, 0);
  std::vector<std::exception_ptr> errors(n);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::size_t consumed = 0;  // done() calls returned; guarded by mu
  auto work = [&] {
    for (;;) {
      if (stop.load(std::memory_order_relaxed)) return;
      const std::size_t i = next.fetch_add(1);
      if (i >= n) return;
      if (max_ahead > 0 && i >= max_ahead) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return consumed + max_ahead > i || stop.load(); });
        if (consumed + max_ahead <= i) return;  // stopped: job i is never started
      }
      std::exception_ptr error;
      try {
        job(i);
      } catch (...) {
        error = std::current_exception();
        stop.store(true, std::memory_order_relaxed);
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        finished[i] = 1;
        errors[i] = error;
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads);
  std::exception_ptr first;
  try {
    for (std::size_t t = 0; t < threads; ++t) pool.emplace_back(work);
  } catch (...) {
    first = std::current_exception();  // could not start a thread: run what is left here
    stop.store(true);
  }
  if (!first) {
    for (std::size_t i = 0; i < n; ++i) {
      {
        std::unique_lock<std::mutex> lock(mu);
        // A job never handed out (stop was set) will not finish: stop waiting then.
        cv.wait(lock, [&] { return finished[i] || (stop && next.load() <= i); });
        if (!finished[i]) break;
        if (errors[i]) {
          first = errors[i];
          break;
        }
      }
      try {
        done(i);
      } catch (...) {
        first = std::current_exception();
        stop.store(true);
        break;
      }
      if (max_ahead > 0) {
        {
          std::lock_guard<std::mutex> lock(mu);
          consumed = i + 1;
        }
        cv.notify_all();
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu);  // wakes workers waiting for a slot
    stop.store(true);
  }
  cv.notify_all();
  for (auto& t : pool) t.join();
  if (!first) {
    for (auto& e : errors) {
      if (e) {
        first = e;
        break;
      }
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace zanj::detail
