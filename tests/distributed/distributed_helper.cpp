// SPDX-License-Identifier: MIT
// One rank of a distributed checkpoint test, in its own process: joins a Gloo process group
// through a FileStore on this machine (127.0.0.1), then saves or reads the test tree.
//
//   distributed_helper --rank R --world N --store FILE --dir DIR --mode save|read
//       [--variant V] [--saved-world S] [--saved-variant V] [--broadcast] [--skew]
//       [--fsize-limit BYTES] [--die-on-fsize] [--timeout-ms T]
//       [--kill-at STAGE --kill-file SUBSTRING]   SIGKILL this rank when a file it writes whose
//                                                 path contains SUBSTRING reaches STAGE (a
//                                                 detail::SaveStage name)
//
// Exit status: 0 done (read: every value as expected), 1 a value differs, 3 IoError,
// 4 ConfigError, 5 FormatError, 6 anything else.
#include <sys/resource.h>
#include <torch/torch.h>

#include <csignal>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "configured_model/distributed.hpp"
#include "configured_model/errors.hpp"
#include "distributed_tree.hpp"
#include "save_stages.hpp"

namespace {

bool same(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ac = a.contiguous();
  const auto bc = b.contiguous();
  const auto n = static_cast<std::size_t>(ac.nbytes());  // empty tensors may have no data pointer
  return n == 0 || std::memcmp(ac.data_ptr(), bc.data_ptr(), n) == 0;
}

// Compares trees; reports the first difference.
bool same(const zanj::Node& a, const zanj::Node& b, const std::string& path) {
  const auto differ = [&](const std::string& what) {
    std::cerr << "differs at '" << path << "': " << what << "\n";
    return false;
  };
  if (a.is_tensor() != b.is_tensor() || a.is_dict() != b.is_dict() || a.is_list() != b.is_list()) {
    return differ("kind");
  }
  if (a.is_tensor()) return same(a.tensor(), b.tensor()) || differ("tensor values");
  if (a.is_dict()) {
    const auto& da = a.as_dict();
    const auto& db = b.as_dict();
    if (da.size() != db.size()) return differ("dict size");
    for (std::size_t i = 0; i < da.size(); ++i) {
      if (da[i].first != db[i].first) return differ("key " + da[i].first);
      if (!same(da[i].second, db[i].second, path + "/" + da[i].first)) return false;
    }
    return true;
  }
  if (a.is_list()) {
    if (a.as_list().size() != b.as_list().size()) return differ("list size");
    for (std::size_t i = 0; i < a.as_list().size(); ++i) {
      if (!same(a.as_list()[i], b.as_list()[i], path + "/" + std::to_string(i))) return false;
    }
    return true;
  }
  return a.scalar() == b.scalar() || differ(a.scalar().dump() + " vs " + b.scalar().dump());
}

std::string g_kill_stage;
std::string g_kill_file;

void kill_at_stage(zanj::detail::SaveStage stage, const std::string& path) {
  if (zanj::detail::save_stage_name(stage) == g_kill_stage &&
      path.find(g_kill_file) != std::string::npos) {
    std::raise(SIGKILL);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Gloo writes to its sockets without MSG_NOSIGNAL: when a peer rank dies, the default SIGPIPE
  // would kill this rank too, before it can report the failure (Python ignores SIGPIPE).
  std::signal(SIGPIPE, SIG_IGN);
  std::map<std::string, std::string> arg;
  for (int i = 1; i < argc; ++i) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0) return 6;
    key = key.substr(2);
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0)
      arg[key] = argv[++i];
    else
      arg[key] = "1";
  }
  const auto get = [&](const char* k, const std::string& def) {
    return arg.count(k) ? arg[k] : def;
  };
  const int rank = std::stoi(get("rank", "0"));
  const int world = std::stoi(get("world", "1"));
  const int variant = std::stoi(get("variant", "0"));
  const std::string dir = get("dir", "");
  const std::string mode = get("mode", "save");
  try {
    auto store = c10::make_intrusive<c10d::FileStore>(get("store", ""), world);
    auto options = c10d::ProcessGroupGloo::Options::create(
        std::chrono::milliseconds(std::stoi(get("timeout-ms", "20000"))));
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
    c10d::ProcessGroup& group = *pg;

    if (mode == "save") {
      rlimit saved_limit{};
      getrlimit(RLIMIT_FSIZE, &saved_limit);
      zanj::DistributedSaveOptions save_options;
      zanj::Node tree = zanj_test::rank_tree(rank, world, variant, save_options);
      if (arg.count("skew") && rank == world - 1) {
        tree.at("state_dict")["fc.bias"] = torch::zeros({65});  // a shape the others do not have
      }
      if (arg.count("fsize-limit")) {  // "disk full" on this rank: writes past the limit fail
        if (!arg.count("die-on-fsize")) std::signal(SIGXFSZ, SIG_IGN);  // else: killed mid-write
        rlimit rl = saved_limit;
        rl.rlim_cur = std::stoull(arg["fsize-limit"]);  // soft limit only: restored below
        setrlimit(RLIMIT_FSIZE, &rl);
      }
      struct Restore {  // the FileStore appends to its file when it is destroyed
        rlimit limit;
        ~Restore() { setrlimit(RLIMIT_FSIZE, &limit); }
      } restore{saved_limit};
      if (arg.count("kill-at")) {
        g_kill_stage = arg["kill-at"];
        g_kill_file = get("kill-file", "");
        zanj::detail::set_save_stage_hook(kill_at_stage);
      }
      const auto result = zanj::save_distributed(dir, tree, group, save_options);
      std::cout << "bytes";
      for (auto b : result.bytes_per_rank) std::cout << " " << b;
      std::cout << " of " << result.tensor_bytes << "\n";
      return 0;
    }
    if (mode == "read") {
      const int saved_world = std::stoi(get("saved-world", std::to_string(world)));
      const int saved_variant = std::stoi(get("saved-variant", std::to_string(variant)));
      zanj::DistributedReadOptions read_options;
      read_options.broadcast_replicated = arg.count("broadcast") > 0;
      const auto [offset, length] = zanj::even_split(zanj_test::kEmbRows, rank, world);
      read_options.pieces[zanj_test::kShardedPath] = {0, offset, length};
      const zanj::Node got = zanj::read_distributed(dir, group, read_options);

      zanj::Node expected = zanj_test::whole_tree(saved_variant);
      auto& emb = expected.at("state_dict").at("emb.weight");
      emb = zanj::Node(emb.tensor().narrow(0, offset, length).clone());
      expected.at("training_state").at("rng")["cpu"] =
          zanj_test::rank_rng(rank < saved_world ? rank : 0, saved_variant);
      return same(got, expected, "") ? 0 : 1;
    }
    std::cerr << "unknown mode " << mode << "\n";
    return 6;
  } catch (const zanj::IoError& e) {
    std::cerr << "IoError: " << e.what() << "\n";
    return 3;
  } catch (const zanj::ConfigError& e) {
    std::cerr << "ConfigError: " << e.what() << "\n";
    return 4;
  } catch (const zanj::FormatError& e) {
    std::cerr << "FormatError: " << e.what() << "\n";
    return 5;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 6;
  }
}
