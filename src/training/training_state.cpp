// SPDX-License-Identifier: MIT
// Optimizer, scheduler, RNG and counters <-> tree, keyed by parameter name.
#include "configured_model/training_state.hpp"

#include <ATen/Context.h>
#include <c10/util/string_utils.h>
#include <torch/cuda.h>
#include <torch/optim.h>

#include <map>
#include <mutex>
#include <unordered_map>

#include "configured_model/errors.hpp"
#include "configured_model/state_dict.hpp"

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

// ---- options <-> JSON, one block per optimizer type ----

ojson options_json(const optim::OptimizerOptions& o, const std::string& type) {
  if (type == "SGD") {
    const auto& s = static_cast<const optim::SGDOptions&>(o);
    return {{"lr", s.lr()},
            {"momentum", s.momentum()},
            {"dampening", s.dampening()},
            {"weight_decay", s.weight_decay()},
            {"nesterov", s.nesterov()}};
  }
  if (type == "Adam" || type == "AdamW") {
    auto adam_like = [](const auto& s) {
      return ojson{{"lr", s.lr()},
                   {"betas", {std::get<0>(s.betas()), std::get<1>(s.betas())}},
                   {"eps", s.eps()},
                   {"weight_decay", s.weight_decay()},
                   {"amsgrad", s.amsgrad()}};
    };
    return type == "Adam" ? adam_like(static_cast<const optim::AdamOptions&>(o))
                          : adam_like(static_cast<const optim::AdamWOptions&>(o));
  }
  if (type == "RMSprop") {
    const auto& s = static_cast<const optim::RMSpropOptions&>(o);
    return {{"lr", s.lr()},
            {"alpha", s.alpha()},
            {"eps", s.eps()},
            {"weight_decay", s.weight_decay()},
            {"momentum", s.momentum()},
            {"centered", s.centered()}};
  }
  const auto& s = static_cast<const optim::AdagradOptions&>(o);
  return {{"lr", s.lr()},
          {"lr_decay", s.lr_decay()},
          {"weight_decay", s.weight_decay()},
          {"initial_accumulator_value", s.initial_accumulator_value()},
          {"eps", s.eps()}};
}

template <class T>
T field(const json& j, const char* key, const std::string& file, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) detail::throw_format_error(file, where, std::string("missing '") + key + "'");
  try {
    return it->get<T>();
  } catch (const json::exception& e) {
    detail::throw_format_error(file, where, std::string("'") + key + "': " + e.what());
  }
}

std::unique_ptr<optim::OptimizerOptions> options_from(const json& j, const std::string& type,
                                                      const std::string& file,
                                                      const std::string& where) {
  auto d = [&](const char* k) { return field<double>(j, k, file, where); };
  auto b = [&](const char* k) { return field<bool>(j, k, file, where); };
  if (type == "SGD") {
    auto o = std::make_unique<optim::SGDOptions>(d("lr"));
    o->momentum(d("momentum"))
        .dampening(d("dampening"))
        .weight_decay(d("weight_decay"))
        .nesterov(b("nesterov"));
    return o;
  }
  if (type == "Adam" || type == "AdamW") {
    const auto betas = field<std::vector<double>>(j, "betas", file, where);
    if (betas.size() != 2) detail::throw_format_error(file, where, "'betas' must hold 2 numbers");
    auto fill = [&](auto o) {
      o->betas(std::make_tuple(betas[0], betas[1]))
          .eps(d("eps"))
          .weight_decay(d("weight_decay"))
          .amsgrad(b("amsgrad"));
      return o;
    };
    if (type == "Adam") return fill(std::make_unique<optim::AdamOptions>(d("lr")));
    return fill(std::make_unique<optim::AdamWOptions>(d("lr")));
  }
  if (type == "RMSprop") {
    auto o = std::make_unique<optim::RMSpropOptions>(d("lr"));
    o->alpha(d("alpha"))
        .eps(d("eps"))
        .weight_decay(d("weight_decay"))
        .momentum(d("momentum"))
        .centered(b("centered"));
    return o;
  }
  auto o = std::make_unique<optim::AdagradOptions>(d("lr"));
  o->lr_decay(d("lr_decay"))
      .weight_decay(d("weight_decay"))
      .initial_accumulator_value(d("initial_accumulator_value"))
      .eps(d("eps"));
  return o;
}

std::string optimizer_type(const optim::Optimizer& o) {
  if (dynamic_cast<const optim::SGD*>(&o)) return "SGD";
  if (dynamic_cast<const optim::Adam*>(&o)) return "Adam";
  if (dynamic_cast<const optim::AdamW*>(&o)) return "AdamW";
  if (dynamic_cast<const optim::RMSprop*>(&o)) return "RMSprop";
  if (dynamic_cast<const optim::Adagrad*>(&o)) return "Adagrad";
  throw ConfigError(std::string("cannot save optimizer of type ") + typeid(o).name() +
                    " (supported: SGD, Adam, AdamW, RMSprop, Adagrad)");
}

std::unique_ptr<optim::Optimizer> make_optimizer(
    const std::string& type, std::vector<optim::OptimizerParamGroup> groups,
    std::unique_ptr<optim::OptimizerOptions> defaults) {
  if (type == "SGD") {
    return std::make_unique<optim::SGD>(std::move(groups),
                                        static_cast<optim::SGDOptions&>(*defaults));
  }
  if (type == "Adam") {
    return std::make_unique<optim::Adam>(std::move(groups),
                                         static_cast<optim::AdamOptions&>(*defaults));
  }
  if (type == "AdamW") {
    return std::make_unique<optim::AdamW>(std::move(groups),
                                          static_cast<optim::AdamWOptions&>(*defaults));
  }
  if (type == "RMSprop") {
    return std::make_unique<optim::RMSprop>(std::move(groups),
                                            static_cast<optim::RMSpropOptions&>(*defaults));
  }
  return std::make_unique<optim::Adagrad>(std::move(groups),
                                          static_cast<optim::AdagradOptions&>(*defaults));
}

// ---- per-parameter state <-> tree ----

void put(Node& n, const char* key, const at::Tensor& t) {
  if (t.defined()) n[key] = t.detach().clone();
}

Node param_state_node(const optim::OptimizerParamState& s, const std::string& type) {
  Node n = Node::dict();
  if (type == "SGD") {
    put(n, "momentum_buffer", static_cast<const optim::SGDParamState&>(s).momentum_buffer());
  } else if (type == "Adam" || type == "AdamW") {
    auto adam_like = [&](const auto& a) {
      n["step"] = json(a.step());
      put(n, "exp_avg", a.exp_avg());
      put(n, "exp_avg_sq", a.exp_avg_sq());
      put(n, "max_exp_avg_sq", a.max_exp_avg_sq());
    };
    if (type == "Adam")
      adam_like(static_cast<const optim::AdamParamState&>(s));
    else
      adam_like(static_cast<const optim::AdamWParamState&>(s));
  } else if (type == "RMSprop") {
    const auto& r = static_cast<const optim::RMSpropParamState&>(s);
    n["step"] = json(r.step());
    put(n, "square_avg", r.square_avg());
    put(n, "momentum_buffer", r.momentum_buffer());
    put(n, "grad_avg", r.grad_avg());
  } else {
    const auto& a = static_cast<const optim::AdagradParamState&>(s);
    n["step"] = json(a.step());
    put(n, "sum", a.sum());
  }
  return n;
}

class StateReader {
 public:
  StateReader(const Node& n, const at::Tensor& param, std::string file, std::string where)
      : n_(n), param_(param), file_(std::move(file)), where_(std::move(where)) {}

  at::Tensor tensor(const char* key, bool required) const {
    const Node* v = n_.find(key);
    if (!v) {
      if (required) detail::throw_format_error(file_, where_, std::string("missing '") + key + "'");
      return {};
    }
    if (!v->is_tensor()) detail::throw_format_error(file_, where_ + "/" + key, "expected a tensor");
    const at::Tensor& t = v->tensor();
    if (t.sizes() != param_.sizes()) {
      throw StateMismatchError(detail::message(file_, where_ + "/" + key,
                                               "shape mismatch (expected " +
                                                   c10::str(param_.sizes()) + ", found " +
                                                   c10::str(t.sizes()) + ")"));
    }
    return t.to(param_.options()).clone();
  }

  std::int64_t integer(const char* key) const {
    const Node* v = n_.find(key);
    if (!v || !v->is_scalar() || !v->scalar().is_number_integer()) {
      detail::throw_format_error(file_, where_, std::string("missing integer '") + key + "'");
    }
    return v->scalar().get<std::int64_t>();
  }

 private:
  const Node& n_;
  const at::Tensor& param_;
  std::string file_;
  std::string where_;
};

std::unique_ptr<optim::OptimizerParamState> param_state_from(const StateReader& r,
                                                             const std::string& type) {
  if (type == "SGD") {
    auto s = std::make_unique<optim::SGDParamState>();
    s->momentum_buffer(r.tensor("momentum_buffer", false));
    return s;
  }
  if (type == "Adam" || type == "AdamW") {
    auto fill = [&](auto s) {
      s->step(r.integer("step"));
      s->exp_avg(r.tensor("exp_avg", true));
      s->exp_avg_sq(r.tensor("exp_avg_sq", true));
      s->max_exp_avg_sq(r.tensor("max_exp_avg_sq", false));
      return s;
    };
    if (type == "Adam") return fill(std::make_unique<optim::AdamParamState>());
    return fill(std::make_unique<optim::AdamWParamState>());
  }
  if (type == "RMSprop") {
    auto s = std::make_unique<optim::RMSpropParamState>();
    s->step(r.integer("step"));
    s->square_avg(r.tensor("square_avg", true));
    s->momentum_buffer(r.tensor("momentum_buffer", false));
    s->grad_avg(r.tensor("grad_avg", false));
    return s;
  }
  auto s = std::make_unique<optim::AdagradParamState>();
  s->step(r.integer("step"));
  s->sum(r.tensor("sum", true));
  return s;
}

// ---- schedulers ----

struct SchedulerRegistry {
  std::mutex mutex;
  std::map<std::string, SchedulerFactory> factories;
};

SchedulerRegistry& schedulers() {
  static SchedulerRegistry* r = [] {
    auto* reg = new SchedulerRegistry;
    reg->factories["StepLR"] = [](optim::Optimizer& o, const json& s) {
      auto sched = std::make_unique<StepLR>(o, s.at("step_size").get<unsigned>(),
                                            s.at("gamma").get<double>());
      sched->set_step_count(s.at("step_count").get<unsigned>());
      return std::unique_ptr<optim::LRScheduler>(std::move(sched));
    };
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

void restore_rng(const Node& n, const std::string& file) {
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

}  // namespace

// ---- StepLR ----

StepLR::StepLR(torch::optim::Optimizer& optimizer, unsigned step_size, double gamma)
    : torch::optim::StepLR(optimizer, step_size, gamma),
      step_size_arg_(step_size),
      gamma_arg_(gamma) {}

nlohmann::json StepLR::scheduler_state() const {
  return {{"step_size", step_size_arg_}, {"gamma", gamma_arg_}, {"step_count", step_count_}};
}

void register_scheduler(const std::string& type, SchedulerFactory factory) {
  auto& reg = schedulers();
  std::lock_guard<std::mutex> lock(reg.mutex);
  reg.factories[type] = std::move(factory);
}

// ---- save ----

Node training_state_node(const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                         const torch::optim::LRScheduler* scheduler, const TrainingState& state) {
  const std::string type = optimizer_type(optimizer);
  std::unordered_map<const void*, std::string> names;
  for (const auto& p : model.named_parameters())
    names.emplace(p.value().unsafeGetTensorImpl(), p.key());

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
      auto s = optimizer.state().find(state_key(p));
      if (s != optimizer.state().end()) per_param[it->second] = param_state_node(*s->second, type);
    }
    Node g = Node::dict();
    g["params"] = Node(params);
    g["options"] = Node(options_json(group.options(), type));
    groups.push_back(std::move(g));
  }
  Node opt = Node::dict();
  opt["type"] = json(type);
  opt["defaults"] = Node(options_json(optimizer.defaults(), type));
  opt["param_groups"] = std::move(groups);
  opt["state"] = std::move(per_param);

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
  root["rng"] = rng_node();
  return root;
}

// ---- resume ----

Resumed resume_training(const Node& ts, torch::nn::Module& model, const std::string& file,
                        const ReadOptions& options) {
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
  const json counters = ts.find("counters") ? json(ts.at("counters").to_json()) : json::object();
  out.state.step = counters.value("step", std::int64_t{0});
  out.state.epoch = counters.value("epoch", std::int64_t{0});
  out.state.samples_seen = counters.value("samples_seen", std::int64_t{0});
  if (const Node* user = ts.find("user")) out.state.user = json(user->to_json());

  const Node* opt = ts.find("optimizer");
  if (!opt || !opt->is_dict())
    detail::throw_format_error(file, "training_state/optimizer", "missing");
  const std::string type = json(opt->at("type").to_json()).get<std::string>();
  if (type != "SGD" && type != "Adam" && type != "AdamW" && type != "RMSprop" &&
      type != "Adagrad") {
    throw ConfigError(detail::message(file, "training_state/optimizer/type",
                                      "unsupported optimizer type '" + type + "'"));
  }
  std::map<std::string, at::Tensor> by_name;
  for (const auto& p : model.named_parameters()) by_name.emplace(p.key(), p.value());

  std::vector<optim::OptimizerParamGroup> groups;
  std::vector<std::string> missing;
  std::set<std::string> used;
  const auto& group_list = opt->at("param_groups").as_list();
  for (std::size_t gi = 0; gi < group_list.size(); ++gi) {
    const std::string where = "training_state/optimizer/param_groups/" + std::to_string(gi);
    const json g = json(group_list[gi].to_json());
    std::vector<at::Tensor> params;
    for (const auto& name : field<std::vector<std::string>>(g, "params", file, where)) {
      auto it = by_name.find(name);
      if (it == by_name.end()) {
        missing.push_back(name);
        continue;
      }
      params.push_back(it->second);
      used.insert(name);
    }
    groups.emplace_back(std::move(params),
                        options_from(g.at("options"), type, file, where + "/options"));
  }
  std::vector<std::string> untracked;
  for (const auto& [name, p] : by_name) {
    if (p.requires_grad() && !used.count(name)) untracked.push_back(name);
  }
  if (!missing.empty() || !untracked.empty()) {
    std::string what = "optimizer does not fit the model";
    if (!missing.empty())
      what += "; parameters missing from the model: " + c10::Join(", ", missing);
    if (!untracked.empty())
      what += "; model parameters the optimizer did not hold: " + c10::Join(", ", untracked);
    throw StateMismatchError(detail::message(file, "training_state/optimizer", what));
  }
  out.optimizer = make_optimizer(type, std::move(groups),
                                 options_from(json(opt->at("defaults").to_json()), type, file,
                                              "training_state/optimizer/defaults"));
  const Node& states = opt->at("state");
  for (const auto& [name, s] : states.as_dict()) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      throw StateMismatchError(detail::message(file, "training_state/optimizer/state/" + name,
                                               "no such parameter in the model"));
    }
    StateReader reader(s, it->second, file, "training_state/optimizer/state/" + name);
    out.optimizer->state()[state_key(it->second)] = param_state_from(reader, type);
  }

  if (const Node* sched = ts.find("scheduler"); sched && !sched->is_null()) {
    const json s = json(sched->to_json());
    const auto stype = s.value("type", std::string());
    SchedulerFactory factory;
    {
      auto& reg = schedulers();
      std::lock_guard<std::mutex> lock(reg.mutex);
      auto it = reg.factories.find(stype);
      if (it == reg.factories.end()) {
        throw ConfigError(detail::message(
            file, "training_state/scheduler",
            "no factory registered for scheduler type '" + stype + "' (zanj::register_scheduler)"));
      }
      factory = it->second;
    }
    try {
      out.scheduler = factory(*out.optimizer, s.value("state", json::object()));
    } catch (const json::exception& e) {
      detail::throw_format_error(file, "training_state/scheduler/state", e.what());
    }
  }
  if (const Node* rng = ts.find("rng")) restore_rng(*rng, file);
  return out;
}

}  // namespace zanj
