// SPDX-License-Identifier: MIT
// Optimizer, scheduler, RNG and counters <-> tree, keyed by parameter name.
#include "configured_model/training_state.hpp"

#include <ATen/Context.h>
#include <c10/util/string_utils.h>
#include <torch/cuda.h>
#include <torch/optim.h>

#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "../registry.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/logging.hpp"
#include "configured_model/state_dict.hpp"
#include "optimizer_codecs.hpp"

namespace zanj {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
namespace optim = torch::optim;

constexpr int kTrainingStateVersion = 1;

std::string state_key(const at::Tensor& p) {
  // The key libtorch's optimizers use for their per-parameter state.
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}

// Runs a codec function, turning what it throws into an error naming the file and entry.
template <class F>
auto in_entry(const std::string& file, const std::string& where, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const StateMismatchError& e) {
    throw StateMismatchError(detail::message(file, where, e.what()));
  } catch (const Error& e) {
    detail::throw_format_error(file, where, e.what());
  } catch (const std::exception& e) {
    detail::throw_format_error(file, where, e.what());
  }
}

std::vector<std::string> string_list(const Node* n, const std::string& file,
                                     const std::string& where) {
  std::vector<std::string> out;
  if (!n) return out;
  try {
    out = json(n->to_json()).get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    detail::throw_format_error(file, where, std::string("expected a list of names: ") + e.what());
  }
  return out;
}

// ---- schedulers ----

using SchedulerRegistry = detail::Registry<SchedulerFactory>;

SchedulerRegistry& schedulers() {
  static SchedulerRegistry* r = [] {
    auto* reg = new SchedulerRegistry;
    reg->add("StepLR", [](optim::Optimizer& o, const json& s) {
      auto sched = std::make_unique<StepLR>(o, s.at("step_size").get<unsigned>(),
                                            s.at("gamma").get<double>());
      sched->set_step_count(s.at("step_count").get<unsigned>());
      return std::unique_ptr<optim::LRScheduler>(std::move(sched));
    });
    return reg;
  }();
  return *r;
}

// ---- RNG ----

Node rng_node() {
  Node n = Node::dict();
  auto cpu = at::globalContext().defaultGenerator(at::Device(at::kCPU));
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    n["cpu"] = cpu.get_state();
  }
  Node cuda = Node::list();
  if (torch::cuda::is_available()) {
    for (std::size_t i = 0; i < torch::cuda::device_count(); ++i) {
      auto g = at::globalContext().defaultGenerator(
          at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(g.mutex());
      cuda.push_back(Node(g.get_state()));
    }
  }
  n["cuda"] = std::move(cuda);
  return n;
}

void set_rng(const Node& n, const std::string& file) {
  const Node* cpu = n.find("cpu");
  if (!cpu || !cpu->is_tensor()) {
    detail::throw_format_error(file, "training_state/rng/cpu", "expected a tensor");
  }
  auto g = at::globalContext().defaultGenerator(at::Device(at::kCPU));
  try {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(cpu->tensor());
  } catch (const c10::Error& e) {
    detail::throw_format_error(
        file, "training_state/rng/cpu",
        std::string("not a CPU generator state: ") + e.what_without_backtrace());
  }
  const Node* cuda = n.find("cuda");
  if (cuda && cuda->is_list() && cuda->size() > 0) {
    const std::size_t available = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
    if (available < cuda->size()) {
      throw StateMismatchError(detail::message(file, "training_state/rng/cuda",
                                               "saved with " + std::to_string(cuda->size()) +
                                                   " CUDA generators, this process has " +
                                                   std::to_string(available)));
    }
    for (std::size_t i = 0; i < cuda->size(); ++i) {
      auto cg = at::globalContext().defaultGenerator(
          at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(cg.mutex());
      cg.set_state(cuda->at(i).tensor());
    }
  }
}

// ---- StepLR ----

}  // namespace

StepLR::StepLR(torch::optim::Optimizer& optimizer, unsigned step_size, double gamma)
    : torch::optim::StepLR(optimizer, step_size, gamma),
      step_size_arg_(step_size),
      gamma_arg_(gamma) {}

nlohmann::json StepLR::scheduler_state() const {
  return {{"step_size", step_size_arg_}, {"gamma", gamma_arg_}, {"step_count", step_count_}};
}

void register_scheduler(const std::string& type, SchedulerFactory factory) {
  schedulers().add(type, std::move(factory));
}

namespace {

// A data position that came with a checkpoint and has not been bound to a sampler yet.
class UnrestoredData : public DataPosition {
 public:
  explicit UnrestoredData(std::string file) : file_(std::move(file)) {}
  Node position() const override {
    throw StateMismatchError(detail::message(
        file_, "training_state/data",
        "the run was resumed from a checkpoint with a data position, but no sampler was "
        "restored to it: call run.restore(sampler) before training (or set state.data to null "
        "to save without one)"));
  }
  void restore(const Node&, const std::string&) override {}

 private:
  std::string file_;
};

}  // namespace

// ---- save ----

Node training_state_node(const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                         const torch::optim::LRScheduler* scheduler, const TrainingState& state) {
  const auto [type, codec] = detail::optimizer_codec_for(optimizer);
  // Tied parameters (one tensor under several names) are saved under their first name.
  std::unordered_map<const void*, std::string> names;
  for (const auto& p : model.named_parameters())
    names.emplace(p.value().unsafeGetTensorImpl(), p.key());

  std::set<const void*> held;
  Node groups = Node::list();
  Node per_param = Node::dict();
  for (const auto& group : optimizer.param_groups()) {
    ojson params = ojson::array();
    for (const auto& p : group.params()) {
      auto it = names.find(p.unsafeGetTensorImpl());
      if (it == names.end()) {
        throw StateMismatchError(
            "training_state: optimizer holds a parameter of shape " + c10::str(p.sizes()) +
            " that is not a parameter of the model; optimizer state is saved by parameter name");
      }
      params.push_back(it->second);
      held.insert(p.unsafeGetTensorImpl());
      auto s = optimizer.state().find(state_key(p));
      if (s != optimizer.state().end() && !per_param.find(it->second)) {
        per_param[it->second] = codec.save_state(*s->second);
      }
    }
    Node g = Node::dict();
    g["params"] = Node(params);
    g["options"] = Node(codec.save_options(group.options()));
    groups.push_back(std::move(g));
  }
  // The parameters the optimizer leaves alone, and which of them were frozen.
  ojson not_optimized = ojson::array();
  ojson frozen = ojson::array();
  for (const auto& p : model.named_parameters()) {
    if (names.at(p.value().unsafeGetTensorImpl()) != p.key()) continue;  // a tie's second name
    if (!held.count(p.value().unsafeGetTensorImpl())) not_optimized.push_back(p.key());
    if (!p.value().requires_grad()) frozen.push_back(p.key());
  }
  Node opt = Node::dict();
  opt["type"] = json(type);
  opt["defaults"] = Node(codec.save_options(optimizer.defaults()));
  opt["param_groups"] = std::move(groups);
  opt["state"] = std::move(per_param);
  opt["not_optimized"] = Node(not_optimized);
  opt["frozen"] = Node(frozen);

  Node root = Node::dict();
  root["version"] = json(kTrainingStateVersion);
  root["counters"] =
      json{{"step", state.step}, {"epoch", state.epoch}, {"samples_seen", state.samples_seen}};
  root["user"] = Node(state.user);
  root["optimizer"] = std::move(opt);
  if (scheduler) {
    const auto* savable = dynamic_cast<const SavableScheduler*>(scheduler);
    if (!savable) {
      throw ConfigError(std::string("cannot save scheduler of type ") + typeid(*scheduler).name() +
                        ": use zanj::StepLR instead of torch::optim::StepLR, or implement "
                        "zanj::SavableScheduler and register_scheduler() for your own");
    }
    root["scheduler"] =
        json{{"type", savable->scheduler_type()}, {"state", savable->scheduler_state()}};
  } else {
    root["scheduler"] = json(nullptr);
  }
  if (state.data) root["data"] = state.data->position();
  root["rng"] = rng_node();
  return root;
}

// ---- resume ----

void Resumed::restore(const std::shared_ptr<DataPosition>& data) {
  if (!data) throw UsageError("Resumed::restore: no data position given");
  if (saved_data.is_null()) {
    logger()->warn(
        "{}: training_state: the checkpoint holds no data position; the sampler "
        "starts where it is",
        file);
  } else {
    data->restore(saved_data, file);
  }
  restore_rng();
  state.data = data;
}

void Resumed::restore_rng() const {
  if (!saved_rng.is_null()) set_rng(saved_rng, file);
}

namespace {

// A copy of `n` whose tensors are copies too.
Node with_copied_tensors(const Node& n) {
  if (n.is_tensor()) return Node(n.tensor().clone());
  if (n.is_dict()) {
    Node out = Node::dict();
    for (const auto& [key, value] : n.as_dict()) out[key] = with_copied_tensors(value);
    return out;
  }
  if (n.is_list()) {
    Node out = Node::list();
    for (const auto& item : n.as_list()) out.push_back(with_copied_tensors(item));
    return out;
  }
  return n;
}

// `owned`: the tree was read for this resume alone, and the optimizer takes its tensors.
Resumed resume(const Node& ts, torch::nn::Module& model, const std::string& file,
               const ReadOptions& options, bool owned) {
  (void)options;
  if (!ts.is_dict()) detail::throw_format_error(file, kTrainingStateKey, "expected a dict");
  const Node* version = ts.find("version");
  if (version && version->is_scalar() && version->scalar().is_number_integer() &&
      version->scalar().get<int>() > kTrainingStateVersion) {
    throw VersionError(detail::message(file, kTrainingStateKey,
                                       "training state version " + version->scalar().dump() +
                                           " is newer than this library understands"));
  }
  Resumed out;
  out.file = file;
  const json counters = ts.find("counters") ? json(ts.at("counters").to_json()) : json::object();
  out.state.step = counters.value("step", std::int64_t{0});
  out.state.epoch = counters.value("epoch", std::int64_t{0});
  out.state.samples_seen = counters.value("samples_seen", std::int64_t{0});
  if (const Node* user = ts.find("user")) out.state.user = json(user->to_json());

  const Node* opt = ts.find("optimizer");
  if (!opt || !opt->is_dict())
    detail::throw_format_error(file, "training_state/optimizer", "missing");
  const Node* type_node = opt->find("type");
  if (!type_node || !type_node->is_scalar() || !type_node->scalar().is_string())
    detail::throw_format_error(file, "training_state/optimizer/type", "expected a string");
  const std::string type = type_node->scalar().get<std::string>();
  const auto codec = detail::optimizer_codec_named(type);
  if (!codec) {
    throw ConfigError(detail::message(file, "training_state/optimizer/type",
                                      "unsupported optimizer type '" + type +
                                          "' (known: " + detail::known_optimizers() +
                                          "; register others with zanj::register_optimizer)"));
  }
  std::map<std::string, at::Tensor> by_name;
  for (const auto& p : model.named_parameters()) by_name.emplace(p.key(), p.value());

  std::vector<optim::OptimizerParamGroup> groups;
  std::vector<std::string> missing;
  std::set<const void*> held;
  const Node* group_list = opt->find("param_groups");
  if (!group_list || !group_list->is_list())
    detail::throw_format_error(file, "training_state/optimizer/param_groups", "expected a list");
  for (std::size_t gi = 0; gi < group_list->size(); ++gi) {
    const std::string where = "training_state/optimizer/param_groups/" + std::to_string(gi);
    const Node& g = group_list->at(gi);
    if (!g.is_dict()) detail::throw_format_error(file, where, "expected a dict");
    std::vector<at::Tensor> params;
    for (const auto& name : string_list(g.find("params"), file, where + "/params")) {
      auto it = by_name.find(name);
      if (it == by_name.end()) {
        missing.push_back(name);
        continue;
      }
      params.push_back(it->second);
      held.insert(it->second.unsafeGetTensorImpl());
    }
    const Node* o = g.find("options");
    if (!o) detail::throw_format_error(file, where, "missing 'options'");
    auto group_options =
        in_entry(file, where + "/options", [&] { return codec->load_options(json(o->to_json())); });
    groups.emplace_back(std::move(params), std::move(group_options));
  }
  // Every parameter of the model is either held by the optimizer or was left out at save time
  // (tied names count as the tensor they share). Older files list none: trainable ones must be
  // held.
  const Node* not_optimized_node = opt->find("not_optimized");
  const auto not_optimized_list =
      string_list(not_optimized_node, file, "training_state/optimizer/not_optimized");
  const std::set<std::string> not_optimized(not_optimized_list.begin(), not_optimized_list.end());
  const auto frozen = string_list(opt->find("frozen"), file, "training_state/optimizer/frozen");
  std::vector<std::string> unaccounted;
  for (const auto& [name, p] : by_name) {
    if (held.count(p.unsafeGetTensorImpl()) || not_optimized.count(name)) continue;
    if (!not_optimized_node && !p.requires_grad()) continue;
    unaccounted.push_back(name);
  }
  for (const auto& name : not_optimized) {
    if (!by_name.count(name)) missing.push_back(name);
  }
  if (!missing.empty() || !unaccounted.empty()) {
    std::string what = "optimizer does not fit the model";
    if (!missing.empty())
      what += "; parameters missing from the model: " + c10::Join(", ", missing);
    if (!unaccounted.empty())
      what += "; model parameters the checkpoint does not know: " + c10::Join(", ", unaccounted);
    throw StateMismatchError(detail::message(file, "training_state/optimizer", what));
  }
  const Node* defaults = opt->find("defaults");
  if (!defaults) detail::throw_format_error(file, "training_state/optimizer", "missing 'defaults'");
  auto default_options = in_entry(file, "training_state/optimizer/defaults",
                                  [&] { return codec->load_options(json(defaults->to_json())); });
  out.optimizer = in_entry(file, "training_state/optimizer",
                           [&] { return codec->make(std::move(groups), *default_options); });
  const Node* states = opt->find("state");
  if (!states || !states->is_dict())
    detail::throw_format_error(file, "training_state/optimizer/state", "expected a dict");
  for (const auto& [name, s] : states->as_dict()) {
    const std::string where = "training_state/optimizer/state/" + name;
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      throw StateMismatchError(detail::message(file, where, "no such parameter in the model"));
    }
    out.optimizer->state()[state_key(it->second)] = in_entry(file, where, [&] {
      return owned ? codec->load_state(s, it->second)
                   : codec->load_state(with_copied_tensors(s), it->second);
    });
  }
  for (const auto& name : frozen) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      throw StateMismatchError(detail::message(file, "training_state/optimizer/frozen",
                                               "no such parameter in the model: " + name));
    }
    it->second.requires_grad_(false);
  }

  if (const Node* sched = ts.find("scheduler"); sched && !sched->is_null()) {
    const json s = json(sched->to_json());
    const auto stype = s.value("type", std::string());
    auto factory = schedulers().find(stype);
    if (!factory) {
      throw ConfigError(detail::message(file, "training_state/scheduler",
                                        "no factory registered for scheduler type '" + stype +
                                            "' (known: " + schedulers().known() +
                                            "; zanj::register_scheduler)"));
    }
    out.scheduler = in_entry(file, "training_state/scheduler/state", [&] {
      return (*factory)(*out.optimizer, s.value("state", json::object()));
    });
  }
  if (const Node* data = ts.find("data"); data && !data->is_null()) {
    out.saved_data = *data;
    out.state.data = std::make_shared<UnrestoredData>(file);
  }
  if (const Node* rng = ts.find("rng")) {
    out.saved_rng = *rng;
    set_rng(*rng, file);
  }
  return out;
}

}  // namespace

Resumed resume_training(const Node& training_state, torch::nn::Module& model,
                        const std::string& file, const ReadOptions& options) {
  return resume(training_state, model, file, options, /*owned=*/false);
}

namespace detail {
Resumed resume_training_owned(const Node& training_state, torch::nn::Module& model,
                              const std::string& file, const ReadOptions& options) {
  return resume(training_state, model, file, options, /*owned=*/true);
}
}  // namespace detail

}  // namespace zanj
