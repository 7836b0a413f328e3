// SPDX-License-Identifier: MIT
// Save/load speed and memory of configured_model against raw I/O and torch::save/load, measured
// in one run on one model (default 25 x Linear(2048, 2048) fp32, about 420 MB).
//
//   zanj_bench [--layers 25] [--width 2048] [--reps 5] [--dir /tmp] [--big-factor 4]
//
// Every time is the median of --reps runs; reads are from the page cache (each is run once
// before timing). Saves are durable: ours fsyncs (crash safety), so raw_write is write() +
// fsync too; raw_write_nosync and torch::save (which does not fsync) are shown for reference.
// The operations of a group run round-robin, with sync() (untimed) after each save.
// Peak RSS (VmHWM) is measured in child processes, one per operation. The last line is
// `BENCH_JSON {...}` with every figure, for scripts.
#include <fcntl.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <configured_model/configured_model.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#ifdef CONFIGURED_MODEL_S3
#include <thread>

#include "storage/s3/s3_client.hpp"
#include "storage/storage.hpp"
#endif
#ifdef CONFIGURED_MODEL_DISTRIBUTED
#include <configured_model/distributed.hpp>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

namespace {

struct BenchConfig {
  int64_t layers = 25;
  int64_t width = 2048;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(BenchConfig, layers, width)

class BenchNet : public zanj::ConfiguredModel<BenchNet, BenchConfig> {
 public:
  explicit BenchNet(BenchConfig c) : ConfiguredModel(std::move(c)) {
    for (int64_t i = 0; i < config().layers; ++i) {
      layers->push_back(torch::nn::Linear(config().width, config().width));
    }
    register_module("layers", layers);
  }
  torch::nn::Sequential layers;
};

using Clock = std::chrono::steady_clock;

std::uint64_t model_bytes(const torch::nn::Module& m) {
  std::uint64_t n = 0;
  for (const auto& [name, t] : zanj::state_dict(m)) n += t.numel() * t.element_size();
  return n;
}

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    check(w > 0, "write failed");
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// The model's tensor bytes, written with write() one tensor after the other.
void raw_write(const torch::nn::Module& m, const std::string& path, bool sync) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  check(fd >= 0, "cannot create " + path);
  for (const auto& [name, t] : zanj::state_dict(m)) {
    write_all(fd, static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  }
  if (sync) check(::fsync(fd) == 0, "fsync failed");
  ::close(fd);
}

// Reads a file back into the model's tensors with read().
void raw_read(torch::nn::Module& m, const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  check(fd >= 0, "cannot open " + path);
  for (auto& [name, t] : zanj::state_dict(m)) {
    auto* p = static_cast<char*>(t.data_ptr());
    std::size_t n = t.numel() * t.element_size();
    while (n > 0) {
      const ssize_t r = ::read(fd, p, n);
      check(r > 0, "read failed");
      p += r;
      n -= static_cast<std::size_t>(r);
    }
  }
  ::close(fd);
}

long vm_hwm_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// An Adam optimizer over `m` after one step (its exp_avg and exp_avg_sq allocated): the training
// state the resume figures are measured with. Model + state = 3x the model's bytes.
std::unique_ptr<torch::optim::Adam> stepped_adam(BenchNet& m) {
  auto opt = std::make_unique<torch::optim::Adam>(m.parameters(), torch::optim::AdamOptions(1e-3));
  for (auto& p : m.parameters()) p.mutable_grad() = torch::full_like(p, 1e-3);
  opt->step();
  return opt;
}

// Child mode: one operation, then its peak RSS on stdout.
int child(const std::string& op, const std::string& path, const BenchConfig& config) {
  torch::manual_seed(0);
  if (op == "baseline") {
    // libtorch loaded, nothing built: what every other figure is measured above.
  } else if (op == "construct") {
    BenchNet m(config);
  } else if (op == "save") {
    BenchNet m(config);
    m.save(path);
  } else if (op == "torch_save") {
    auto m = std::make_shared<BenchNet>(config);
    torch::save(m, path);
  } else if (op == "read_copy") {
    BenchNet::read(path);
  } else if (op == "read_mmap") {
    zanj::ReadOptions o;
    o.mmap = true;
    auto m = BenchNet::read(path, o);
    torch::NoGradGuard g;
    double sum = 0;  // touch every parameter: the mapped pages count as RSS now
    for (const auto& p : m->parameters()) sum += p.sum().item<double>();
    std::fprintf(stderr, "checksum %g\n", sum);
  } else if (op == "load") {
    BenchNet m(config);
    m.load(path);
  } else if (op == "resume") {
    // A checkpoint with Adam state: the model and optimizer rebuilt from it.
    const auto run = zanj::resume<BenchNet>(path);
  } else if (op == "async_stalls" || op == "async_stalls_unreserved") {
    // The loop's stall at the first save_async of a process, and the median of the next ones,
    // with the staging memory reserved at setup as documented (async_stalls_unreserved: not).
    BenchNet m(config);
    zanj::AsyncSaver saver;
    if (op == "async_stalls") saver.reserve(m.to_node());
    std::vector<double> stalls;
    for (int i = 0; i < 6; ++i) {
      const auto start = Clock::now();
      auto handle = saver.save_model(m, path);
      stalls.push_back(std::chrono::duration<double>(Clock::now() - start).count());
      handle.wait();
    }
    std::vector<double> later(stalls.begin() + 1, stalls.end());
    std::sort(later.begin(), later.end());
    std::printf("%.6f %.6f\n", stalls[0], later[later.size() / 2]);
    return 0;
  } else if (op == "save_async" || op == "save_async_2") {
    // Consecutive background saves (each waits for the one before): model + one staging copy.
    BenchNet m(config);
    zanj::AsyncSaver saver;
    const int n = op == "save_async" ? 20 : 2;
    for (int i = 0; i < n; ++i) saver.save_model(m, path);
    saver.wait();
  } else {
    return 2;
  }
  std::printf("%ld\n", vm_hwm_kb());
  return 0;
}

// This benchmark again, as a child with `args`, its stdout on a pipe: {pid, read end}.
std::pair<pid_t, int> spawn_self(std::vector<std::string> args) {
  int out[2];
  check(::pipe(out) == 0, "pipe failed");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    args.insert(args.begin(), "zanj_bench");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  return {pid, out[0]};
}

// Everything the child printed; fails unless it exited 0.
std::string collect(pid_t pid, int fd, const std::string& what) {
  std::string text;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, what + " failed");
  return text;
}

long child_peak_kb(const std::string& op, const std::string& path, const BenchConfig& c) {
  const auto [pid, fd] = spawn_self({"--child", op, "--path", path, "--layers",
                                     std::to_string(c.layers), "--width", std::to_string(c.width)});
  return std::stol(collect(pid, fd, "child " + op));
}

#ifdef CONFIGURED_MODEL_DISTRIBUTED
// Bytes this process has read through read()/pread() (/proc/self/io rchar).
std::uint64_t bytes_read_so_far() {
  std::ifstream in("/proc/self/io");
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "rchar:") return value;
  }
  return 0;
}

// Distributed child: rank `rank` of `world` in a Gloo group over a FileStore; "dist_save" saves
// the (replicated, seed 0) model into DIR, "dist_read" reads DIR's checkpoint. Prints
// "<seconds> <bytes>": bytes this rank wrote (its file) or read.
int dist_child(const std::string& op, const std::string& dir, int rank, int world,
               const std::string& store_path, const BenchConfig& config) {
  auto store = c10::make_intrusive<c10d::FileStore>(store_path, world);
  auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(300));
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
  c10d::ProcessGroup& group = *pg;
  torch::manual_seed(0);
  if (op == "dist_save") {
    BenchNet m(config);
    const zanj::Node tree = m.to_node();
    const auto start = Clock::now();
    const auto result = zanj::save_distributed(dir, tree, group);
    const double t = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf(
        "%.6f %llu\n", t,
        static_cast<unsigned long long>(result.bytes_per_rank[static_cast<std::size_t>(rank)]));
    return 0;
  }
  if (op == "dist_resume_save") {
    BenchNet m(config);
    auto opt = stepped_adam(m);
    const auto start = Clock::now();
    zanj::save_distributed(dir, zanj::checkpoint_node(m, *opt, nullptr, {}), group);
    std::printf("%.6f 0\n", std::chrono::duration<double>(Clock::now() - start).count());
    return 0;
  }
  if (op == "dist_resume") {
    const auto start = Clock::now();
    const auto run = zanj::resume_distributed<BenchNet>(dir, group);
    std::printf("%.6f 0\n", std::chrono::duration<double>(Clock::now() - start).count());
    return 0;
  }
  if (op == "dist_read" || op == "dist_read_bcast") {
    zanj::DistributedReadOptions read;
    read.broadcast_replicated = op == "dist_read_bcast";
    const auto before = bytes_read_so_far();
    const auto start = Clock::now();
    const zanj::Node tree = zanj::read_distributed(dir, group, read);
    const double t = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("%.6f %llu\n", t, static_cast<unsigned long long>(bytes_read_so_far() - before));
    return 0;
  }
  return 2;
}

// Runs `world` dist children; returns the slowest rank's time and each rank's bytes.
std::pair<double, std::vector<std::uint64_t>> run_dist(const std::string& op,
                                                       const std::string& dir, int world,
                                                       const BenchConfig& c) {
  const std::string store = dir + ".store." + op + "." + std::to_string(world);
  std::remove(store.c_str());
  std::vector<std::pair<pid_t, int>> children;
  for (int r = 0; r < world; ++r) {
    children.push_back(
        spawn_self({"--child", op, "--path", dir, "--layers", std::to_string(c.layers), "--width",
                    std::to_string(c.width), "--rank", std::to_string(r), "--world",
                    std::to_string(world), "--store", store}));
  }
  double slowest = 0;
  std::vector<std::uint64_t> bytes;
  for (int r = 0; r < world; ++r) {
    const auto [pid, fd] = children[static_cast<std::size_t>(r)];
    const std::string text = collect(pid, fd, op + " rank " + std::to_string(r));
    double t = 0;
    unsigned long long b = 0;
    check(std::sscanf(text.c_str(), "%lf %llu", &t, &b) == 2, op + ": no figures from a rank");
    slowest = std::max(slowest, t);
    bytes.push_back(b);
  }
  std::remove(store.c_str());
  return {slowest, bytes};
}
#endif

struct Row {
  std::string key, label;
  double value;
  std::string unit;  // "s" or "MB"
  std::string ratio_key;
  double ratio;
  std::string ratio_label;
};

}  // namespace

#ifdef CONFIGURED_MODEL_S3
namespace s3 = zanj::detail::s3;

// Runs job(0..n-1) on `streams` threads.
void in_parallel(std::size_t n, std::size_t streams, const std::function<void(std::size_t)>& job) {
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> threads;
  std::exception_ptr error;
  std::mutex mu;
  for (std::size_t t = 0; t < std::min(n, streams); ++t) {
    threads.emplace_back([&] {
      for (std::size_t i; (i = next.fetch_add(1)) < n;) {
        try {
          job(i);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mu);
          if (!error) error = std::current_exception();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

// Object-store figures against the store the environment names (scripts/bench.sh starts a
// local one): a save against a bare multipart PUT loop of the same bytes with the same client,
// part size and streams; a full read against a bare ranged GET loop; requests of a lazy read.
void s3_figures(BenchNet& model, const std::string& prefix, int reps,
                nlohmann::ordered_json& json) {
  const s3::Client client(s3::Config::from_environment());
  const std::string uri = prefix + "/bench.zanj";
  const auto key = s3::Uri::parse(uri);
  const std::size_t part = client.config().part_bytes;
  constexpr std::size_t kUploadStreams = 4;                     // as s3_storage.cpp
  constexpr std::size_t kReadStreams = 8, kReadPart = 8 << 20;  // as archive_reader.cpp
  model.save(uri);
  const std::string bytes =
      *zanj::detail::storage_for(uri).read_if_exists(uri);  // the same bytes, for the loops
  auto put_loop = [&] {
    s3::Request create;
    create.method = "POST";
    create.uri = s3::Uri::parse(prefix + "/bare.bin");
    create.query = {{"uploads", ""}};
    const std::string id = s3::xml_values(client.send(create).body, "UploadId").at(0);
    const std::size_t parts = (bytes.size() + part - 1) / part;
    std::vector<std::string> etags(parts);
    in_parallel(parts, kUploadStreams, [&](std::size_t i) {
      s3::Request r;
      r.method = "PUT";
      r.uri = create.uri;
      r.query = {{"partNumber", std::to_string(i + 1)}, {"uploadId", id}};
      r.body = std::string_view(bytes).substr(i * part, part);
      etags[i] = client.send(r).headers["etag"];
    });
    std::string xml = "<CompleteMultipartUpload>";
    for (std::size_t i = 0; i < parts; ++i) {
      xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" + etags[i] +
             "</ETag></Part>";
    }
    s3::Request done;
    done.method = "POST";
    done.uri = create.uri;
    done.query = {{"uploadId", id}};
    done.headers.push_back("Content-Type: application/xml");
    done.body = xml += "</CompleteMultipartUpload>";
    client.send(done);
  };
  std::string sink(bytes.size(), '\0');
  auto get_loop = [&] {
    const std::size_t parts = (bytes.size() + kReadPart - 1) / kReadPart;
    in_parallel(parts, kReadStreams, [&](std::size_t i) {
      s3::Request r;
      r.uri = key;
      const std::size_t at = i * kReadPart, n = std::min(kReadPart, bytes.size() - at);
      r.headers.push_back("Range: bytes=" + std::to_string(at) + "-" + std::to_string(at + n - 1));
      r.sink = &sink[at];
      r.sink_bytes = n;
      client.send(r);
    });
  };
  auto median = [&](const std::function<void()>& op) {
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      const auto start = Clock::now();
      op();
      t.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  BenchNet target(model.config());
  const double save_s = median([&] { model.save(uri); });
  const double put_s = median(put_loop);
  const auto before_read = s3::stats().requests;
  target.load(uri);
  const auto read_requests = s3::stats().requests - before_read;
  const double read_s = median([&] { target.load(uri); });
  const double get_s = median(get_loop);
  check(zanj::state_digest(zanj::state_dict(target)) == zanj::state_digest(zanj::state_dict(model)),
        "the load from the store did not restore the model");
  const auto before_open = s3::stats().requests;
  const auto lazy = zanj::LazyFile::open(uri);
  const auto after_open = s3::stats().requests;
  (void)lazy.tensor("state_dict/layers.0.weight");
  const auto after_tensor = s3::stats().requests;
  json["s3_save_vs_put_loop"] = save_s / put_s;
  json["s3_read_vs_get_loop"] = read_s / get_s;
  json["s3_open_requests"] = after_open - before_open;
  json["s3_lazy_requests"] = after_tensor - before_open;
  json["s3_save_s"] = save_s;
  json["s3_put_loop_s"] = put_s;
  json["s3_read_s"] = read_s;
  json["s3_read_requests"] = read_requests;
  json["s3_get_loop_s"] = get_s;
  json["s3_part_bytes"] = part;
  std::printf("%-34s %10.3f s vs bare PUT loop %.3f s: %.2f\n", "s3 save", save_s, put_s,
              save_s / put_s);
  std::printf("%-34s %10.3f s vs bare GET loop %.3f s: %.2f\n", "s3 load", read_s, get_s,
              read_s / get_s);
  std::printf("%-34s %10llu open, %llu open + one tensor\n", "s3 requests",
              static_cast<unsigned long long>(after_open - before_open),
              static_cast<unsigned long long>(after_tensor - before_open));
  for (const char* k : {"/bench.zanj", "/bare.bin"}) {
    zanj::detail::storage_for(prefix + k).remove_all(prefix + k);
  }
}
#endif

int main(int argc, char** argv) {
  CLI::App app{"configured_model checkpoint benchmark"};
  BenchConfig config;
  int reps = 5;
  int big_factor = 4;
  std::string dir = "/tmp", child_op, child_path;
  app.add_option("--layers", config.layers, "Linear layers in the model")
      ->check(CLI::PositiveNumber);
  app.add_option("--width", config.width, "Width of each square Linear layer")
      ->check(CLI::PositiveNumber);
  app.add_option("--reps", reps, "Timed repetitions per figure (median)")
      ->check(CLI::PositiveNumber);
  app.add_option("--big-factor", big_factor, "Size of the lazy-read file, in models")
      ->check(CLI::PositiveNumber);
  app.add_option("--dir", dir, "Directory for the files (removed afterwards)");
  int keys_small = 10000, keys_large = 100000, keys_python = 50000;
  app.add_option("--keys-small", keys_small, "Tensors in the small file of the key-count figures")
      ->check(CLI::PositiveNumber);
  app.add_option("--keys-large", keys_large, "Tensors in the large file of the key-count figures")
      ->check(CLI::PositiveNumber);
  app.add_option("--keys-python", keys_python, "Tensors in the file zanj ls and Python load")
      ->check(CLI::PositiveNumber);
  std::string s3_prefix = std::getenv("ZANJ_BENCH_S3") ? std::getenv("ZANJ_BENCH_S3") : "";
  app.add_option("--s3", s3_prefix,
                 "s3://bucket/prefix for the object-store figures (scripts/bench.sh starts a "
                 "local server and passes it)");
  bool s3_only = false;
  app.add_flag("--s3-only", s3_only, "Only the object-store figures (needs --s3)");
  app.add_option("--child", child_op)->group("");
  app.add_option("--path", child_path)->group("");
  int child_rank = 0, child_world = 1;
  std::string child_store;
  app.add_option("--rank", child_rank)->group("");
  app.add_option("--world", child_world)->group("");
  app.add_option("--store", child_store)->group("");
  CLI11_PARSE(app, argc, argv);
  zanj::logger()->set_level(spdlog::level::warn);
#ifdef CONFIGURED_MODEL_DISTRIBUTED
  if (child_op.rfind("dist_", 0) == 0) {
    return dist_child(child_op, child_path, child_rank, child_world, child_store, config);
  }
#endif
  if (!child_op.empty()) return child(child_op, child_path, config);

  try {
    const std::string base = dir + "/zanj_bench_" + std::to_string(::getpid());
    const std::string raw = base + ".raw", pt = base + ".pt", zf = base + ".zanj",
                      big = base + "_big.zanj";
    torch::manual_seed(0);
    auto model = std::make_shared<BenchNet>(config);
    const std::uint64_t bytes = model_bytes(*model);
    const double mb = static_cast<double>(bytes) / 1e6;
    std::cout << "model: " << config.layers << " x Linear(" << config.width << ", " << config.width
              << ") fp32 = " << mb << " MB; median of " << reps << " runs\n";
    BenchNet target(config);  // loads go into this one
#ifdef CONFIGURED_MODEL_S3
    if (s3_only) {
      check(!s3_prefix.empty(), "--s3-only needs --s3 (or ZANJ_BENCH_S3)");
      nlohmann::ordered_json json;
      json["model_mb"] = mb;
      s3_figures(*model, s3_prefix, reps, json);
      std::cout << "BENCH_JSON " << json.dump() << std::endl;
      return 0;
    }
#endif

    // The operations of each group run round-robin, so that they share the machine's state
    // (page cache, writeback, allocator); one untimed round warms everything up first.
    std::map<std::string, double> s;
    auto rounds = [&](const std::vector<std::pair<std::string, std::function<void()>>>& ops,
                      bool settle = false) {
      std::map<std::string, std::vector<double>> times;
      for (int round = 0; round <= reps; ++round) {
        for (const auto& [name, op] : ops) {
          if (settle) ::sync();  // untimed: no writeback of the last save in this one's time
          const auto start = Clock::now();
          op();
          if (round > 0)
            times[name].push_back(std::chrono::duration<double>(Clock::now() - start).count());
        }
      }
      for (auto& [name, v] : times) {
        std::sort(v.begin(), v.end());
        s[name] = v[v.size() / 2];
      }
    };
    zanj::ReadOptions no_crc;
    no_crc.check_crc = false;
    zanj::ReadOptions mapped;
    mapped.mmap = true;
    auto loaded = std::make_shared<BenchNet>(config);
    rounds({{"raw_write", [&] { raw_write(*model, raw, true); }},
            {"raw_write_nosync", [&] { raw_write(*model, raw, false); }},
            {"torch_save", [&] { torch::save(model, pt); }},
            {"zanj_save", [&] { model->save(zf); }}},
           /*settle=*/true);
    target.load(zf);
    check(zanj::state_digest(zanj::state_dict(target)) ==
              zanj::state_digest(zanj::state_dict(*model)),
          "load did not restore the model");
    rounds({{"raw_read", [&] { raw_read(target, raw); }},
            {"torch_load", [&] { torch::load(loaded, pt); }},
            {"zanj_load", [&] { target.load(zf); }},
            {"zanj_load_nocrc", [&] { target.load(zf, no_crc); }},
            {"construct", [&] { BenchNet m(config); }},
            {"read_copy", [&] { BenchNet::read(zf); }},
            {"read_mmap", [&] { BenchNet::read(zf, mapped); }},
            {"mmap_open", [&] { zanj::read(zf, mapped); }}});

    // A file big_factor times larger, for the flatness of mapping and lazy single reads.
    {
      BenchConfig bc = config;
      bc.layers *= big_factor;
      BenchNet bigger(bc);
      bigger.save(big);
    }
    const std::string key =
        "state_dict/layers." + std::to_string(config.layers * big_factor / 2) + ".weight";
    torch::Tensor one;
    rounds({{"mmap_open_big", [&] { zanj::read(big, mapped); }},
            {"lazy_one_small",
             [&] { one = zanj::LazyFile::open(zf).tensor("state_dict/layers.0.weight"); }},
            {"lazy_one_big", [&] { one = zanj::LazyFile::open(big).tensor(key); }}});
    {
      // The same bytes read raw: pread of the tensor's data at its offset.
      const auto archive = zanj::ArchiveReader::open(big);
      const std::string entry = key.substr(std::string("state_dict/").size()) + ".npy";
      const std::string name = "state_dict/" + entry;
      const auto header =
          zanj::parse_npy_header(archive.read_head(name, 4096), archive.find(name)->size);
      const auto at = archive.data_offset(name) + header.data_offset;
      const std::size_t n = one.numel() * one.element_size();
      // Opened and read into new memory, as a tensor needs.
      rounds({{"lazy_one_raw", [&] {
                 const int fd = ::open(big.c_str(), O_RDONLY);
                 std::unique_ptr<char[]> buf(new char[n]);
                 check(fd >= 0 && ::pread(fd, buf.get(), n, static_cast<off_t>(at)) ==
                                      static_cast<ssize_t>(n),
                       "pread failed");
                 ::close(fd);
               }}});
    }

    // Background saves: the caller's stall (the snapshot) against a bare memcpy of the same
    // bytes into memory already touched, and the background write against a synchronous save.
    {
      std::vector<char> buffer(bytes);
      std::memset(buffer.data(), 1, buffer.size());
      std::vector<double> copies, stalls, writes;
      zanj::AsyncSaver saver;
      saver.save_model(*model, zf).wait();  // the first save allocates the staging area
      for (int round = 0; round < reps; ++round) {
        auto start = Clock::now();
        std::size_t at = 0;
        for (const auto& [name, t] : zanj::state_dict(*model)) {
          const std::size_t n = t.numel() * t.element_size();
          std::memcpy(buffer.data() + at, t.data_ptr(), n);
          at += n;
        }
        copies.push_back(std::chrono::duration<double>(Clock::now() - start).count());
        ::sync();
        start = Clock::now();
        auto handle = saver.save_model(*model, zf);
        const auto returned = Clock::now();
        handle.wait();
        stalls.push_back(std::chrono::duration<double>(returned - start).count());
        writes.push_back(std::chrono::duration<double>(Clock::now() - returned).count());
      }
      for (auto* v : {&copies, &stalls, &writes}) std::sort(v->begin(), v->end());
      s["memcpy"] = copies[copies.size() / 2];
      s["async_stall"] = stalls[stalls.size() / 2];
      s["async_write"] = writes[writes.size() / 2];
    }

    // Deflated files: Python's default layout (zipfile, ZIP_DEFLATED at zlib's default level,
    // written by Python itself when it is there) read into the model, and our kDeflate save.
    const std::string deflated = base + "_python_deflated.zanj", ours = base + "_deflate.zanj";
    zanj::SaveOptions deflate_options;
    deflate_options.compression = zanj::Compression::kDeflate;
    std::string deflated_by = "python zipfile (zlib level 6)";
    {
      const std::string cmd =
          "/usr/bin/python3 -c 'import sys, zipfile\n"
          "src = zipfile.ZipFile(sys.argv[1])\n"
          "with zipfile.ZipFile(sys.argv[2], \"w\", zipfile.ZIP_DEFLATED) as dst:\n"
          "    for i in src.infolist(): dst.writestr(i.filename, src.read(i.filename))\n' " +
          zf + " " + deflated + " 2>/dev/null";
      if (std::system(cmd.c_str()) != 0) {
        deflated_by = "configured_model kDeflate (no python3 here)";
        model->save(deflated, deflate_options);
      }
    }
    target.load(deflated);
    check(zanj::state_digest(zanj::state_dict(target)) ==
              zanj::state_digest(zanj::state_dict(*model)),
          "load of the deflated file did not restore the model");
    rounds({{"load_stored", [&] { target.load(zf); }},
            {"load_deflated", [&] { target.load(deflated); }},
            {"read_deflated", [&] { BenchNet::read(deflated); }},
            {"save_stored", [&] { model->save(zf); }},
            {"save_deflate", [&] { model->save(ours, deflate_options); }}},
           /*settle=*/true);
    const double deflated_ratio =
        static_cast<double>(bytes) / static_cast<double>(std::filesystem::file_size(deflated));
    const double ours_ratio =
        static_cast<double>(bytes) / static_cast<double>(std::filesystem::file_size(ours));
    std::cout << "deflated file by " << deflated_by << ": " << deflated_ratio
              << ":1; ours (ISA-L level " << deflate_options.deflate_level << "): " << ours_ratio
              << ":1\n";

    // Lazy open + one tensor of checkpoints of 10 and of 10,000 small tensors (LLM-like key
    // counts), against a raw open + pread of that tensor's bytes.
    auto many = [&](int n) {
      zanj::Node::Dict sd;
      for (int i = 0; i < n; ++i) {
        sd.emplace_back("blocks." + std::to_string(i) + ".weight",
                        zanj::Node(torch::randn({16, 64})));
      }
      zanj::Node::Dict root;
      root.emplace_back("state_dict", zanj::Node(std::move(sd)));
      const std::string path = base + "_many" + std::to_string(n) + ".zanj";
      zanj::save(zanj::Node(std::move(root)), path);
      return path;
    };
    const std::string many10 = many(10), many10k = many(10000);
    rounds({{"lazy_open_10",
             [&] { one = zanj::LazyFile::open(many10).tensor("state_dict/blocks.5.weight"); }},
            {"lazy_open_10k", [&] {
               one = zanj::LazyFile::open(many10k).tensor("state_dict/blocks.5000.weight");
             }}});

    // Foreign formats: a Python torch.save state dict of the model (written by Python from our
    // file when python3-torch is there) loaded into a model, against torch::load of libtorch's
    // own archive; a safetensors file opened and mapped, and copied into a model.
    const std::string py_pt = base + "_python.pt", st = base + ".safetensors";
    std::string pt_by = "python3 torch.save";
    {
      zanj::Node sd = zanj::Node::dict();
      for (const auto& [name, t] : zanj::state_dict(*model)) sd[name] = t;
      zanj::save_torch(sd, py_pt);
      const std::string cmd =
          "/usr/bin/python3 -c 'import sys, torch\n"
          "torch.save(torch.load(sys.argv[1]), sys.argv[1])' " +
          py_pt + " 2>/dev/null";
      if (std::system(cmd.c_str()) != 0) pt_by = "configured_model save_torch (no python3-torch)";
      zanj::save_safetensors(zanj::state_dict(*model), st);
    }
    zanj::LoadWeightsOptions st_copy;
    zanj::ReadOptions st_mapped;
    st_mapped.mmap = true;
    rounds({{"torch_load_2", [&] { torch::load(loaded, pt); }},
            {"raw_read_2", [&] { raw_read(target, raw); }},
            {"pt_python_load", [&] { zanj::load_weights(target, py_pt); }},
            {"safetensors_open",
             [&] {
               const auto f = zanj::SafetensorsFile::open(st);
               (void)f.read_all(/*mmap=*/true);
             }},
            {"safetensors_load", [&] { zanj::load_weights(target, st, st_copy); }}});
    check(zanj::state_digest(zanj::state_dict(target)) ==
              zanj::state_digest(zanj::state_dict(*model)),
          "load of the safetensors file did not restore the model");
    zanj::load_weights(target, py_pt);
    check(zanj::state_digest(zanj::state_dict(target)) ==
              zanj::state_digest(zanj::state_dict(*model)),
          "load of the Python torch.save file did not restore the model");
    std::cout << "Python .pt file by " << pt_by << "\n";

    std::map<std::string, double> rss;
    for (const char* op : {"baseline", "construct", "save", "torch_save", "read_copy", "read_mmap",
                           "load", "save_async", "save_async_2"}) {
      rss[op] = static_cast<double>(
                    child_peak_kb(op, std::string(op) == "torch_save" ? pt : zf, config)) /
                1e3;
    }

    // Resume: a checkpoint of the model with Adam state, resumed, against Model::read of the same
    // file (which reads the same bytes); resume's peak RSS against model + optimizer state.
    const std::string ck = base + "_adam.zanj";
    {
      BenchNet m(config);
      auto opt = stepped_adam(m);
      zanj::save_checkpoint(ck, m, *opt, nullptr, {});
    }
    rounds({{"resume", [&] { const auto run = zanj::resume<BenchNet>(ck); }},
            {"read_checkpoint", [&] { BenchNet::read(ck); }}});
    rss["resume"] = static_cast<double>(child_peak_kb("resume", ck, config)) / 1e3;
    // The first save_async of a process against the later ones.
    auto stalls = [&](const std::string& op) {
      const auto [pid, fd] =
          spawn_self({"--child", op, "--path", base + "_stalls.zanj", "--layers",
                      std::to_string(config.layers), "--width", std::to_string(config.width)});
      const std::string text = collect(pid, fd, "child " + op);
      std::pair<double, double> first_steady;
      check(std::sscanf(text.c_str(), "%lf %lf", &first_steady.first, &first_steady.second) == 2,
            op + ": no figures");
      std::filesystem::remove(base + "_stalls.zanj");
      return first_steady;
    };
    const auto [first_stall, steady_stall] = stalls("async_stalls");
    const auto [unreserved_first, unreserved_steady] = stalls("async_stalls_unreserved");

    auto ratio = [&](const std::string& a, const std::string& b) { return s[a] / s[b]; };
    std::vector<Row> rows = {
        {"raw_write", "raw write() + fsync", s["raw_write"], "s", "", 0, ""},
        {"raw_write_nosync", "raw write(), no fsync", s["raw_write_nosync"], "s", "", 0, ""},
        {"raw_read", "raw read()", s["raw_read"], "s", "", 0, ""},
        {"torch_save", "torch::save (no fsync)", s["torch_save"], "s", "torch_save_vs_raw_write",
         ratio("torch_save", "raw_write"), "x raw write"},
        {"torch_load", "torch::load into a model", s["torch_load"], "s", "torch_load_vs_raw_read",
         ratio("torch_load", "raw_read"), "x raw read"},
        {"construct", "construct the model", s["construct"], "s", "", 0, ""},
        {"zanj_save", "zanj save (fsync)", s["zanj_save"], "s", "zanj_save_vs_raw_write",
         ratio("zanj_save", "raw_write"), "x raw write"},
        {"zanj_save_vs_torch_save", "zanj save / torch::save", ratio("zanj_save", "torch_save"),
         "x", "", 0, ""},
        {"zanj_load", "zanj load into a model (CRC)", s["zanj_load"], "s", "zanj_load_vs_raw_read",
         ratio("zanj_load", "raw_read"), "x raw read"},
        {"zanj_load_nocrc", "zanj load, check_crc=false", s["zanj_load_nocrc"], "s",
         "zanj_load_nocrc_vs_raw_read", ratio("zanj_load_nocrc", "raw_read"), "x raw read"},
        {"read_copy", "Model::read copy mode", s["read_copy"], "s",
         "read_copy_vs_construct_plus_torch_load",
         s["read_copy"] / (s["construct"] + s["torch_load"]), "x (construct + torch::load)"},
        {"read_mmap", "Model::read mmap mode", s["read_mmap"], "s", "read_mmap_vs_construct",
         ratio("read_mmap", "construct"), "x construct"},
        {"mmap_open", "zanj::read mmap (open + map)", s["mmap_open"], "s", "", 0, ""},
        {"mmap_open_big", "  the same, file " + std::to_string(big_factor) + "x bigger",
         s["mmap_open_big"], "s", "mmap_open_big_vs_small", ratio("mmap_open_big", "mmap_open"),
         "x small file"},
        {"lazy_one_small", "lazy one tensor, small file", s["lazy_one_small"], "s", "", 0, ""},
        {"lazy_one_big", "lazy one tensor, big file", s["lazy_one_big"], "s", "lazy_one_big_vs_raw",
         ratio("lazy_one_big", "lazy_one_raw"), "x raw pread of its bytes"},
        {"lazy_one_raw", "raw pread of that tensor", s["lazy_one_raw"], "s", "", 0, ""},
        {"memcpy", "memcpy of the model's bytes", s["memcpy"], "s", "", 0, ""},
        {"async_stall", "save_async: caller blocked", s["async_stall"], "s",
         "async_stall_vs_memcpy", ratio("async_stall", "memcpy"), "x memcpy"},
        {"async_write", "save_async: background write", s["async_write"], "s",
         "async_write_vs_sync_save", ratio("async_write", "zanj_save"), "x synchronous save"},
        {"load_stored", "load, stored file", s["load_stored"], "s", "", 0, ""},
        {"load_deflated", "load, Python-deflated file", s["load_deflated"], "s",
         "deflated_read_vs_stored", ratio("load_deflated", "load_stored"), "x stored"},
        {"read_deflated", "Model::read, Python-deflated", s["read_deflated"], "s", "", 0, ""},
        {"save_stored", "save, stored", s["save_stored"], "s", "", 0, ""},
        {"save_deflate", "save, kDeflate", s["save_deflate"], "s", "deflate_save_vs_stored",
         ratio("save_deflate", "save_stored"), "x stored"},
        {"pt_python_load", "load_weights, Python torch.save", s["pt_python_load"], "s",
         "pt_python_load_vs_torch_load", ratio("pt_python_load", "torch_load_2"),
         "x torch::load of libtorch's archive"},
        {"safetensors_load", "load_weights, safetensors (copy)", s["safetensors_load"], "s",
         "safetensors_load_vs_raw_read", ratio("safetensors_load", "raw_read_2"), "x raw read"},
        {"safetensors_mmap_open", "safetensors open + map every tensor", s["safetensors_open"], "s",
         "", 0, ""},
        {"lazy_open_10", "lazy open + 1 of 10 tensors", s["lazy_open_10"], "s", "", 0, ""},
        {"lazy_open_10k", "lazy open + 1 of 10,000 tensors", s["lazy_open_10k"], "s", "", 0, ""},
    };
    // Peak RSS above the baseline process (libtorch loaded, about 150 MB), against model size.
    for (const auto& [op, v] : rss) {
      if (op == "baseline") continue;
      const double above = v - rss["baseline"];
      rows.push_back({"peak_rss_" + op, "peak RSS above baseline: " + op, above, "MB",
                      "peak_rss_" + op + "_vs_model", above / mb, "x model size"});
    }
    rows.push_back({"peak_rss_baseline", "peak RSS of the baseline process", rss["baseline"], "MB",
                    "", 0, ""});

    std::printf("\n%-34s %12s %10s  %s\n", "operation", "value", "GB/s", "ratio");
    nlohmann::ordered_json json;
    json["model_mb"] = mb;
    json["reps"] = reps;
    for (const auto& r : rows) {
      char value[32], speed[32] = "";
      if (r.unit == "s") {
        std::snprintf(value, sizeof value, "%.4f s", r.value);
        const bool whole_model = r.key.rfind("lazy", 0) != 0 && r.key.rfind("mmap", 0) != 0 &&
                                 r.key != "safetensors_mmap_open" && r.key != "construct" &&
                                 r.key != "read_mmap";
        if (whole_model) {
          std::snprintf(speed, sizeof speed, "%.2f", static_cast<double>(bytes) / r.value / 1e9);
        }
      } else if (r.unit == "MB") {
        std::snprintf(value, sizeof value, "%.0f MB", r.value);
      } else {
        std::snprintf(value, sizeof value, "%.2f x", r.value);
      }
      std::string ratio_text;
      if (!r.ratio_key.empty()) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "%.2f %s", r.ratio, r.ratio_label.c_str());
        ratio_text = buf;
        json[r.ratio_key] = r.ratio;
      }
      std::printf("%-34s %12s %10s  %s\n", r.label.c_str(), value, speed, ratio_text.c_str());
      json[r.key + (r.unit == "s" ? "_s" : r.unit == "MB" ? "_mb" : "")] = r.value;
    }
    json["async_stall_vs_torch_save"] = s["async_stall"] / s["torch_save"];
    json["resume_s"] = s["resume"];
    json["read_checkpoint_s"] = s["read_checkpoint"];
    json["resume_vs_read"] = s["resume"] / s["read_checkpoint"];
    json["resume_peak_rss_mb"] = rss["resume"] - rss["baseline"];
    json["resume_peak_rss_vs_state"] = (rss["resume"] - rss["baseline"]) / (3 * mb);
    json["async_first_stall_s"] = first_stall;
    json["async_steady_stall_s"] = steady_stall;
    json["async_first_stall_vs_steady"] = first_stall / steady_stall;
    json["async_first_stall_unreserved_vs_steady"] = unreserved_first / unreserved_steady;
    std::printf("%-34s %12.3f x Model::read of the checkpoint\n", "resume",
                s["resume"] / s["read_checkpoint"]);
    std::printf("%-34s %12.3f x model + Adam state\n", "resume peak RSS",
                json["resume_peak_rss_vs_state"].get<double>());
    std::printf("%-34s %12.3f x the later ones (%.3f s vs %.3f s)\n", "first save_async stall",
                first_stall / steady_stall, first_stall, steady_stall);
    std::printf("%-34s %12.3f x torch::save\n", "save_async stall",
                s["async_stall"] / s["torch_save"]);
    // 20 consecutive background saves against 2: the staging area must not grow.
    json["async_rss_growth_20_saves_mb"] = rss["save_async"] - rss["save_async_2"];
    json["peak_rss_async_vs_model"] = (rss["save_async"] - rss["baseline"]) / mb;
    // Throughput of uncompressed bytes (the model's), as the deflate targets are stated.
    json["deflated_read_gbps"] = static_cast<double>(bytes) / s["load_deflated"] / 1e9;
    json["deflate_save_gbps"] = static_cast<double>(bytes) / s["save_deflate"] / 1e9;
    json["deflated_python_ratio"] = deflated_ratio;
    json["deflate_save_ratio"] = ours_ratio;
    std::printf("%-34s %12.2f GB/s of model bytes\n", "deflated read (load)",
                json["deflated_read_gbps"].get<double>());
    std::printf("%-34s %12.2f GB/s of model bytes\n", "kDeflate save",
                json["deflate_save_gbps"].get<double>());
#ifdef CONFIGURED_MODEL_DISTRIBUTED
    // Distributed saves of the model, data parallel (every rank holds all of it): the bytes each
    // rank writes against the model's, save and resume wall time (N processes on this machine,
    // sharing its cores and disk), and the bytes each rank reads resuming 4 -> 2.
    {
      const std::string ddir = base + "_dist";
      std::printf("\n%-34s %10s %10s %12s %10s\n", "distributed (N ranks)", "save s", "read s",
                  "max B/rank", "x model");
      {
        // A 1-rank resume_distributed against resume of the same state from one file.
        std::filesystem::remove_all(ddir);
        run_dist("dist_resume_save", ddir, 1, config);
        const auto [resume_s, unused] = run_dist("dist_resume", ddir, 1, config);
        json["dist_resume_s_n1"] = resume_s;
        json["dist_resume_vs_resume_n1"] = resume_s / s["resume"];
        std::printf("%-34s %10s %10.4f  (%.2f x resume from one file)\n",
                    "resume_distributed N = 1", "", resume_s, resume_s / s["resume"]);
      }
      for (int n : {1, 2, 4}) {
        std::filesystem::remove_all(ddir);
        const auto [save_s, written] = run_dist("dist_save", ddir, n, config);
        const auto [read_s, read_bytes] = run_dist("dist_read", ddir, n, config);
        const double largest =
            static_cast<double>(*std::max_element(written.begin(), written.end()));
        const std::string k = "_n" + std::to_string(n);
        json["dist_bytes_per_rank_vs_model" + k] = largest / static_cast<double>(bytes);
        json["dist_save_s" + k] = save_s;
        json["dist_read_s" + k] = read_s;
        json["dist_save_vs_single_save" + k] = save_s / s["zanj_save"];
        std::printf("%-34s %10.4f %10.4f %12.0f %10.3f\n", ("N = " + std::to_string(n)).c_str(),
                    save_s, read_s, largest, largest / static_cast<double>(bytes));
        if (n == 4) {
          const auto [resume_s, per_rank] = run_dist("dist_read", ddir, 2, config);
          const double most =
              static_cast<double>(*std::max_element(per_rank.begin(), per_rank.end()));
          json["dist_read_s_4_to_2"] = resume_s;
          json["dist_bytes_read_per_rank_vs_model_4_to_2"] = most / static_cast<double>(bytes);
          std::printf("%-34s %10s %10.4f %12.0f %10.3f  (bytes read by the busiest rank)\n",
                      "resume 4 -> 2", "", resume_s, most, most / static_cast<double>(bytes));
          const auto [bcast_s, bcast_bytes] = run_dist("dist_read_bcast", ddir, 2, config);
          json["dist_read_broadcast_s_4_to_2"] = bcast_s;
          json["dist_bytes_read_rank1_vs_model_4_to_2_broadcast"] =
              static_cast<double>(bcast_bytes[1]) / static_cast<double>(bytes);
          std::printf("%-34s %10s %10.4f %12.0f %10.3f  (rank 0 reads and broadcasts; rank 1's)\n",
                      "resume 4 -> 2, broadcast", "", bcast_s, static_cast<double>(bcast_bytes[1]),
                      static_cast<double>(bcast_bytes[1]) / static_cast<double>(bytes));
        }
      }
      std::filesystem::remove_all(ddir);
    }
#endif
#ifdef ZANJ_CLI
    // Key counts: `zanj ls` (the whole process, as a user runs it) of files of 10k and 100k small
    // tensors in each format; linear readers give 10. And `zanj ls` of a Python torch.save state
    // dict of 50k tensors against Python loading it (`python3 -c 'import torch; torch.load(f)'`,
    // the whole process too; the load alone is printed beside it).
    {
      const auto wall = [&](const std::string& cmd) {
        double best = 1e300;
        for (int r = 0; r < std::min(reps, 3); ++r) {
          const auto start = Clock::now();
          if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0) {
            throw std::runtime_error("benchmark command failed: " + cmd);
          }
          best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
        }
        return best;
      };
      const std::string cli = ZANJ_CLI;
      const auto keyed = [&](int n, const std::string& ext) {
        zanj::Node::Dict sd;
        zanj::StateDict named;
        for (int i = 0; i < n; ++i) {
          auto t = torch::full({2}, static_cast<float>(i));
          std::string name = "layers." + std::to_string(i) + ".weight";
          sd.emplace_back(name, zanj::Node(t));
          named.emplace_back(std::move(name), t);
        }
        const std::string path = base + "_keys" + std::to_string(n) + ext;
        if (ext == ".safetensors") {
          zanj::save_safetensors(named, path);
        } else if (ext == ".pt") {
          zanj::save_torch(zanj::Node(std::move(sd)), path);
          // Python's own torch.save of it where python3-torch is installed.
          const std::string cmd =
              "/usr/bin/python3 -c 'import sys, torch\n"
              "torch.save(torch.load(sys.argv[1]), sys.argv[1])' " +
              path + " 2>/dev/null";
          (void)std::system(cmd.c_str());
        } else {
          zanj::save(zanj::Node(std::move(sd)), path);
        }
        return path;
      };
      std::printf("\n%-34s %10s %10s %10s\n", "zanj ls, keys", std::to_string(keys_small).c_str(),
                  std::to_string(keys_large).c_str(), "ratio");
      for (const std::string ext : {".pt", ".safetensors", ".zanj"}) {
        double t[2];
        int i = 0;
        for (int n : {keys_small, keys_large}) {
          const std::string path = keyed(n, ext);
          t[i++] = wall(cli + " ls " + path);
          std::remove(path.c_str());
        }
        const std::string name = ext == ".pt"            ? "pt"
                                 : ext == ".safetensors" ? "safetensors"
                                                         : "zanj";
        // Normalised to a tenfold key count, so that other sizes (the smoke test's) compare.
        json["keys_scaling_" + name] = t[1] / t[0] * 10.0 * keys_small / keys_large;
        json["keys_ls_s_small_" + name] = t[0];
        json["keys_ls_s_large_" + name] = t[1];
        std::printf("%-34s %10.3f %10.3f %10.2f\n", name.c_str(), t[0], t[1],
                    json["keys_scaling_" + name].get<double>());
      }
      if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0) {
        const std::string path = keyed(keys_python, ".pt");
        const double ls_wall = wall(cli + " ls " + path);
        const double python =
            wall("/usr/bin/python3 -c 'import sys, torch\ntorch.load(sys.argv[1])' " + path);
        const double import_only = wall("/usr/bin/python3 -c 'import torch'");
        std::remove(path.c_str());
        json["many_keys_pt_vs_python"] = ls_wall / python;
        json["many_keys_pt_ls_s"] = ls_wall;
        json["many_keys_pt_python_s"] = python;
        json["many_keys_pt_python_load_only_s"] = python - import_only;
        std::printf("%-34s %10.3f s vs python %.3f s (torch.load alone %.3f s): %.2f\n",
                    "zanj ls, 50k-tensor torch.save", ls_wall, python, python - import_only,
                    ls_wall / python);
      }
    }
#endif
#ifdef CONFIGURED_MODEL_S3
    if (!s3_prefix.empty()) s3_figures(*model, s3_prefix, reps, json);
#else
    if (!s3_prefix.empty()) std::cerr << "zanj_bench: built without s3:// (CONFIGURED_MODEL_S3)\n";
#endif
    for (const auto& f : {raw, pt, zf, big, deflated, ours, many10, many10k, py_pt, st, ck})
      std::remove(f.c_str());
    std::cout << "BENCH_JSON " << json.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "zanj_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
