// SPDX-License-Identifier: MIT
// One codec per optimizer type libtorch ships, each option and state field listed once.
#include "optimizer_codecs.hpp"

#include <c10/util/Optional.h>
#include <c10/util/string_utils.h>
#include <torch/optim.h>

#include <deque>
#include <stdexcept>
#include <tuple>
#include <type_traits>

#include "../registry.hpp"
#include "configured_model/errors.hpp"

namespace zanj {
namespace {

using json = nlohmann::json;
namespace optim = torch::optim;

// ---- option values <-> JSON ----

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<c10::optional<T>> : std::true_type {};

template <class T>
json to_j(const T& v) {
  if constexpr (is_optional<T>::value) {
    return v ? to_j(*v) : json(nullptr);
  } else if constexpr (std::is_same_v<T, std::tuple<double, double>>) {
    return json::array({std::get<0>(v), std::get<1>(v)});
  } else {
    return json(v);
  }
}

template <class T>
T from_j(const json& j) {
  if constexpr (is_optional<T>::value) {
    if (j.is_null()) return c10::nullopt;
    return from_j<typename T::value_type>(j);
  } else if constexpr (std::is_same_v<T, std::tuple<double, double>>) {
    if (!j.is_array() || j.size() != 2) throw std::invalid_argument("expected 2 numbers");
    return {j.at(0).get<double>(), j.at(1).get<double>()};
  } else {
    return j.get<T>();
  }
}

template <class Options>
struct OptionField {
  const char* key;
  json (*get)(const Options&);
  void (*set)(Options&, const json&);
};

// One option of a TORCH_ARG options struct: its name is the accessor's name.
#define ZANJ_OPTION(Options, name)                                                        \
  OptionField<Options> {                                                                  \
#name, [](const Options& o) { return to_j(o.name()); }, [](Options& o, const json& j) { \
      o.name(from_j<std::decay_t<decltype(std::declval<const Options&>().name())>>(j));     \
    } \
  }

// ---- per-parameter state fields <-> tree ----

enum class Kind {
  kInteger,     // int64
  kReal,        // double
  kParamShape,  // a tensor shaped like the parameter (may be absent)
  kRequired,    // a tensor shaped like the parameter, always present
  kFree,        // a tensor of any shape (may be absent)
  kList,        // a list of tensors of any shape
  kOptList,     // an optional list of tensors of any shape
};

at::Tensor load_tensor(const Node& v, const char* key, const at::Tensor& param, bool shaped) {
  if (!v.is_tensor()) throw FormatError(std::string(key) + ": expected a tensor");
  const at::Tensor& t = v.tensor();
  if (shaped && t.sizes() != param.sizes()) {
    throw StateMismatchError(std::string(key) + ": shape mismatch (expected " +
                             c10::str(param.sizes()) + ", found " + c10::str(t.sizes()) + ")");
  }
  // Parameter-shaped state follows the parameter's dtype; the rest keeps its own. No copy when
  // nothing converts: the caller hands over a tree it does not use again.
  return shaped ? t.to(param.options()) : t.to(param.device());
}

std::vector<at::Tensor> load_list(const Node& v, const char* key, const at::Tensor& param) {
  if (!v.is_list()) throw FormatError(std::string(key) + ": expected a list of tensors");
  std::vector<at::Tensor> out;
  for (const auto& item : v.as_list()) out.push_back(load_tensor(item, key, param, false));
  return out;
}

template <class State>
struct StateField {
  const char* key;
  Kind kind;
  void (*save)(const State&, Node&, const char* key);
  void (*load)(State&, const Node* value, const char* key, const at::Tensor& param);
};

template <class T>
void save_value(const T& v, Node& n, const char* key) {
  if constexpr (std::is_same_v<T, at::Tensor>) {
    if (v.defined()) n[key] = v.detach().clone();
  } else if constexpr (std::is_same_v<T, std::deque<at::Tensor>> ||
                       std::is_same_v<T, std::vector<at::Tensor>>) {
    Node list = Node::list();
    for (const auto& t : v) list.push_back(Node(t.detach().clone()));
    n[key] = std::move(list);
  } else if constexpr (is_optional<T>::value) {
    if (v) save_value(*v, n, key);
  } else {
    n[key] = json(v);
  }
}

template <class T>
T load_value(const Node* v, const char* key, const at::Tensor& param, Kind kind) {
  if constexpr (std::is_same_v<T, at::Tensor>) {
    if (!v) {
      if (kind == Kind::kRequired) throw FormatError(std::string("missing '") + key + "'");
      return {};
    }
    return load_tensor(*v, key, param, kind != Kind::kFree);
  } else if constexpr (std::is_same_v<T, std::deque<at::Tensor>>) {
    if (!v) throw FormatError(std::string("missing '") + key + "'");
    auto list = load_list(*v, key, param);
    return T(list.begin(), list.end());
  } else if constexpr (is_optional<T>::value) {
    if (!v) return c10::nullopt;
    return load_list(*v, key, param);
  } else {
    if (!v || !v->is_scalar()) throw FormatError(std::string("missing number '") + key + "'");
    const json& s = v->scalar();
    if (std::is_integral_v<T> ? !s.is_number_integer() : !s.is_number()) {
      throw FormatError(std::string(key) + ": expected a number, found " + s.dump());
    }
    return s.get<T>();
  }
}

#define ZANJ_STATE(State, name, kind)                                                          \
  StateField<State> {                                                                          \
#name, kind, [](const State& s, Node& n, const char* key) { save_value(s.name(), n, key); }, \
        [](State& s, const Node* v, const char* key, const at::Tensor& param) {              \
          s.name(load_value<std::decay_t<decltype(std::declval<const State&>().name())>>(    \
              v, key, param, kind));                                                         \
        } \
  }

// A codec from the field lists of a libtorch optimizer.
template <class Opt, class Options, class State>
OptimizerCodec table_codec(std::vector<OptionField<Options>> options,
                           std::vector<StateField<State>> state) {
  OptimizerCodec c;
  // The exact type: a subclass of a built-in optimizer needs its own codec.
  c.matches = [](const optim::Optimizer& o) { return typeid(o) == typeid(Opt); };
  c.save_options = [options](const optim::OptimizerOptions& o) {
    json j = json::object();
    for (const auto& f : options) j[f.key] = f.get(static_cast<const Options&>(o));
    return j;
  };
  c.load_options = [options](const json& j) {
    std::unique_ptr<Options> o;
    if constexpr (std::is_default_constructible_v<Options>) {
      o = std::make_unique<Options>();
    } else {
      o = std::make_unique<Options>(0.0);  // SGD: lr has no default; the fields set it
    }
    for (const auto& f : options) {
      auto it = j.find(f.key);
      if (it == j.end()) throw FormatError(std::string("missing option '") + f.key + "'");
      try {
        f.set(*o, *it);
      } catch (const std::exception& e) {
        throw FormatError(std::string("option '") + f.key + "': " + e.what());
      }
    }
    return std::unique_ptr<optim::OptimizerOptions>(std::move(o));
  };
  c.save_state = [state](const optim::OptimizerParamState& s) {
    Node n = Node::dict();
    for (const auto& f : state) f.save(static_cast<const State&>(s), n, f.key);
    return n;
  };
  c.load_state = [state](const Node& n, const at::Tensor& param) {
    if (!n.is_dict()) throw FormatError("expected a dict");
    auto s = std::make_unique<State>();
    for (const auto& f : state) f.load(*s, n.find(f.key), f.key, param);
    return std::unique_ptr<optim::OptimizerParamState>(std::move(s));
  };
  c.make = [](std::vector<optim::OptimizerParamGroup> groups,
              const optim::OptimizerOptions& defaults) {
    return std::unique_ptr<optim::Optimizer>(
        std::make_unique<Opt>(std::move(groups), static_cast<const Options&>(defaults)));
  };
  return c;
}

// Adam and AdamW share their fields (AdamW's weight decay is decoupled, not another field).
template <class Opt, class O, class S>
OptimizerCodec adam_like() {
  using K = Kind;
  return table_codec<Opt, O, S>(
      {ZANJ_OPTION(O, lr), ZANJ_OPTION(O, betas), ZANJ_OPTION(O, eps), ZANJ_OPTION(O, weight_decay),
       ZANJ_OPTION(O, amsgrad)},
      {ZANJ_STATE(S, step, K::kInteger), ZANJ_STATE(S, exp_avg, K::kRequired),
       ZANJ_STATE(S, exp_avg_sq, K::kRequired), ZANJ_STATE(S, max_exp_avg_sq, K::kParamShape)});
}

using Registry = detail::Registry<OptimizerCodec>;

Registry& optimizers() {
  static Registry* r = [] {
    auto* reg = new Registry;
    using K = Kind;
    {
      using O = optim::SGDOptions;
      using S = optim::SGDParamState;
      reg->add("SGD", table_codec<optim::SGD, O, S>(
                          {ZANJ_OPTION(O, lr), ZANJ_OPTION(O, momentum), ZANJ_OPTION(O, dampening),
                           ZANJ_OPTION(O, weight_decay), ZANJ_OPTION(O, nesterov)},
                          {ZANJ_STATE(S, momentum_buffer, K::kParamShape)}));
    }
    reg->add("Adam", adam_like<optim::Adam, optim::AdamOptions, optim::AdamParamState>());
    reg->add("AdamW", adam_like<optim::AdamW, optim::AdamWOptions, optim::AdamWParamState>());
    {
      using O = optim::RMSpropOptions;
      using S = optim::RMSpropParamState;
      reg->add(
          "RMSprop",
          table_codec<optim::RMSprop, O, S>(
              {ZANJ_OPTION(O, lr), ZANJ_OPTION(O, alpha), ZANJ_OPTION(O, eps),
               ZANJ_OPTION(O, weight_decay), ZANJ_OPTION(O, momentum), ZANJ_OPTION(O, centered)},
              {ZANJ_STATE(S, step, K::kInteger), ZANJ_STATE(S, square_avg, K::kRequired),
               ZANJ_STATE(S, momentum_buffer, K::kParamShape),
               ZANJ_STATE(S, grad_avg, K::kParamShape)}));
    }
    {
      using O = optim::AdagradOptions;
      using S = optim::AdagradParamState;
      reg->add("Adagrad",
               table_codec<optim::Adagrad, O, S>(
                   {ZANJ_OPTION(O, lr), ZANJ_OPTION(O, lr_decay), ZANJ_OPTION(O, weight_decay),
                    ZANJ_OPTION(O, initial_accumulator_value), ZANJ_OPTION(O, eps)},
                   {ZANJ_STATE(S, step, K::kInteger), ZANJ_STATE(S, sum, K::kRequired)}));
    }
    {
      // LBFGS keeps one state for all its parameters, under its first parameter.
      using O = optim::LBFGSOptions;
      using S = optim::LBFGSParamState;
      reg->add("LBFGS",
               table_codec<optim::LBFGS, O, S>(
                   {ZANJ_OPTION(O, lr), ZANJ_OPTION(O, max_iter), ZANJ_OPTION(O, max_eval),
                    ZANJ_OPTION(O, tolerance_grad), ZANJ_OPTION(O, tolerance_change),
                    ZANJ_OPTION(O, history_size), ZANJ_OPTION(O, line_search_fn)},
                   {ZANJ_STATE(S, func_evals, K::kInteger), ZANJ_STATE(S, n_iter, K::kInteger),
                    ZANJ_STATE(S, t, K::kReal), ZANJ_STATE(S, prev_loss, K::kReal),
                    ZANJ_STATE(S, d, K::kFree), ZANJ_STATE(S, H_diag, K::kFree),
                    ZANJ_STATE(S, prev_flat_grad, K::kFree), ZANJ_STATE(S, old_dirs, K::kList),
                    ZANJ_STATE(S, old_stps, K::kList), ZANJ_STATE(S, ro, K::kList),
                    ZANJ_STATE(S, al, K::kOptList)}));
    }
    return reg;
  }();
  return *r;
}

}  // namespace

void register_optimizer(const std::string& type, OptimizerCodec codec) {
  if (!codec.matches || !codec.save_options || !codec.load_options || !codec.save_state ||
      !codec.load_state || !codec.make) {
    throw ConfigError("register_optimizer('" + type + "'): every function of the codec is needed");
  }
  optimizers().add(type, std::move(codec));
}

std::vector<std::string> optimizer_names() { return optimizers().names(); }

namespace detail {

std::pair<std::string, OptimizerCodec> optimizer_codec_for(const optim::Optimizer& optimizer) {
  auto found = optimizers().find_if([&](const OptimizerCodec& c) { return c.matches(optimizer); });
  if (!found) {
    throw ConfigError(std::string("cannot save optimizer of type ") + typeid(optimizer).name() +
                      " (supported: " + known_optimizers() +
                      "; register others with zanj::register_optimizer)");
  }
  return *found;
}

std::optional<OptimizerCodec> optimizer_codec_named(const std::string& type) {
  return optimizers().find(type);
}

std::string known_optimizers() { return optimizers().known(); }

}  // namespace detail
}  // namespace zanj
