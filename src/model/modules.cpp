// SPDX-License-Identifier: MIT
#include "configured_model/modules.hpp"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/loss.h>

#include <map>
#include <mutex>
#include <set>

#include "../registry.hpp"
#include "configured_model/errors.hpp"

namespace zanj {
namespace {

using json = nlohmann::json;

// Reads keyword arguments and refuses the ones nobody asked for.
class Kwargs {
 public:
  Kwargs(std::string owner, const json& kwargs) : owner_(std::move(owner)), kwargs_(kwargs) {
    if (!kwargs_.is_null() && !kwargs_.is_object()) {
      throw ConfigError(owner_ + ": keyword arguments must be a JSON object, found " +
                        kwargs_.dump());
    }
  }

  template <class T>
  T get(const std::string& key, T fallback) {
    used_.insert(key);
    if (kwargs_.is_null() || !kwargs_.contains(key)) return fallback;
    try {
      return kwargs_.at(key).get<T>();
    } catch (const json::exception& e) {
      throw ConfigError(owner_ + ": keyword argument '" + key + "': " + e.what());
    }
  }

  template <class Options>
  void reduction(Options& opts) {
    const auto r = get<std::string>("reduction", "mean");
    if (r == "mean") {
      opts.reduction(torch::kMean);
    } else if (r == "sum") {
      opts.reduction(torch::kSum);
    } else if (r == "none") {
      opts.reduction(torch::kNone);
    } else {
      throw ConfigError(owner_ +
                        ": keyword argument 'reduction': expected \"mean\", \"sum\" or "
                        "\"none\", found \"" +
                        r + "\"");
    }
  }

  template <class Module>
  torch::nn::AnyModule done(Module m) {
    if (kwargs_.is_object()) {
      for (auto it = kwargs_.begin(); it != kwargs_.end(); ++it) {
        if (!used_.count(it.key())) {
          throw ConfigError(owner_ + ": unknown keyword argument '" + it.key() + "'");
        }
      }
    }
    return torch::nn::AnyModule(std::move(m));
  }

 private:
  std::string owner_;
  const json& kwargs_;
  std::set<std::string> used_;
};

using Registry = detail::Registry<ModuleFactory>;

Registry& activations() {
  static Registry* r = [] {
    auto* reg = new Registry;
    std::map<std::string, ModuleFactory> f;
    using namespace torch::nn;
    f["ReLU"] = [](const json& k) {
      Kwargs a("ReLU", k);
      return a.done(ReLU(ReLUOptions().inplace(a.get("inplace", false))));
    };
    f["ReLU6"] = [](const json& k) {
      Kwargs a("ReLU6", k);
      return a.done(ReLU6(ReLU6Options().inplace(a.get("inplace", false))));
    };
    f["LeakyReLU"] = [](const json& k) {
      Kwargs a("LeakyReLU", k);
      return a.done(LeakyReLU(LeakyReLUOptions()
                                  .negative_slope(a.get("negative_slope", 0.01))
                                  .inplace(a.get("inplace", false))));
    };
    f["ELU"] = [](const json& k) {
      Kwargs a("ELU", k);
      return a.done(ELU(ELUOptions().alpha(a.get("alpha", 1.0)).inplace(a.get("inplace", false))));
    };
    f["CELU"] = [](const json& k) {
      Kwargs a("CELU", k);
      return a.done(
          CELU(CELUOptions().alpha(a.get("alpha", 1.0)).inplace(a.get("inplace", false))));
    };
    f["SELU"] = [](const json& k) {
      Kwargs a("SELU", k);
      return a.done(SELU(SELUOptions().inplace(a.get("inplace", false))));
    };
    f["GELU"] = [](const json& k) {
      Kwargs a("GELU", k);
      return a.done(GELU(GELUOptions().approximate(a.get<std::string>("approximate", "none"))));
    };
    f["SiLU"] = [](const json& k) {
      Kwargs a("SiLU", k);
      return a.done(SiLU());
    };
    f["Mish"] = [](const json& k) {
      Kwargs a("Mish", k);
      return a.done(Mish());
    };
    f["Sigmoid"] = [](const json& k) {
      Kwargs a("Sigmoid", k);
      return a.done(Sigmoid());
    };
    f["Tanh"] = [](const json& k) {
      Kwargs a("Tanh", k);
      return a.done(Tanh());
    };
    f["Softsign"] = [](const json& k) {
      Kwargs a("Softsign", k);
      return a.done(Softsign());
    };
    f["Tanhshrink"] = [](const json& k) {
      Kwargs a("Tanhshrink", k);
      return a.done(Tanhshrink());
    };
    f["LogSigmoid"] = [](const json& k) {
      Kwargs a("LogSigmoid", k);
      return a.done(LogSigmoid());
    };
    f["Identity"] = [](const json& k) {
      Kwargs a("Identity", k);
      return a.done(Identity());
    };
    f["Softplus"] = [](const json& k) {
      Kwargs a("Softplus", k);
      return a.done(
          Softplus(SoftplusOptions().beta(a.get("beta", 1.0)).threshold(a.get("threshold", 20.0))));
    };
    f["Hardtanh"] = [](const json& k) {
      Kwargs a("Hardtanh", k);
      return a.done(Hardtanh(HardtanhOptions()
                                 .min_val(a.get("min_val", -1.0))
                                 .max_val(a.get("max_val", 1.0))
                                 .inplace(a.get("inplace", false))));
    };
    f["Hardshrink"] = [](const json& k) {
      Kwargs a("Hardshrink", k);
      return a.done(Hardshrink(HardshrinkOptions().lambda(a.get("lambd", 0.5))));
    };
    f["Softshrink"] = [](const json& k) {
      Kwargs a("Softshrink", k);
      return a.done(Softshrink(SoftshrinkOptions().lambda(a.get("lambd", 0.5))));
    };
    f["PReLU"] = [](const json& k) {
      Kwargs a("PReLU", k);
      return a.done(PReLU(PReLUOptions()
                              .num_parameters(a.get<int64_t>("num_parameters", 1))
                              .init(a.get("init", 0.25))));
    };
    f["Softmax"] = [](const json& k) {
      Kwargs a("Softmax", k);
      return a.done(Softmax(SoftmaxOptions(a.get<int64_t>("dim", -1))));
    };
    f["LogSoftmax"] = [](const json& k) {
      Kwargs a("LogSoftmax", k);
      return a.done(LogSoftmax(LogSoftmaxOptions(a.get<int64_t>("dim", -1))));
    };
    for (auto& [name, factory] : f) reg->add(name, std::move(factory));
    return reg;
  }();
  return *r;
}

Registry& losses() {
  static Registry* r = [] {
    auto* reg = new Registry;
    std::map<std::string, ModuleFactory> f;
    using namespace torch::nn;
    f["CrossEntropyLoss"] = [](const json& k) {
      Kwargs a("CrossEntropyLoss", k);
      CrossEntropyLossOptions o;
      a.reduction(o);
      o.ignore_index(a.get<int64_t>("ignore_index", -100))
          .label_smoothing(a.get("label_smoothing", 0.0));
      return a.done(CrossEntropyLoss(o));
    };
    f["NLLLoss"] = [](const json& k) {
      Kwargs a("NLLLoss", k);
      NLLLossOptions o;
      a.reduction(o);
      o.ignore_index(a.get<int64_t>("ignore_index", -100));
      return a.done(NLLLoss(o));
    };
    f["MSELoss"] = [](const json& k) {
      Kwargs a("MSELoss", k);
      MSELossOptions o;
      a.reduction(o);
      return a.done(MSELoss(o));
    };
    f["L1Loss"] = [](const json& k) {
      Kwargs a("L1Loss", k);
      L1LossOptions o;
      a.reduction(o);
      return a.done(L1Loss(o));
    };
    f["BCELoss"] = [](const json& k) {
      Kwargs a("BCELoss", k);
      BCELossOptions o;
      a.reduction(o);
      return a.done(BCELoss(o));
    };
    f["BCEWithLogitsLoss"] = [](const json& k) {
      Kwargs a("BCEWithLogitsLoss", k);
      BCEWithLogitsLossOptions o;
      a.reduction(o);
      return a.done(BCEWithLogitsLoss(o));
    };
    f["SmoothL1Loss"] = [](const json& k) {
      Kwargs a("SmoothL1Loss", k);
      SmoothL1LossOptions o;
      a.reduction(o);
      o.beta(a.get("beta", 1.0));
      return a.done(SmoothL1Loss(o));
    };
    f["HuberLoss"] = [](const json& k) {
      Kwargs a("HuberLoss", k);
      HuberLossOptions o;
      a.reduction(o);
      o.delta(a.get("delta", 1.0));
      return a.done(HuberLoss(o));
    };
    f["SoftMarginLoss"] = [](const json& k) {
      Kwargs a("SoftMarginLoss", k);
      SoftMarginLossOptions o;
      a.reduction(o);
      return a.done(SoftMarginLoss(o));
    };
    f["KLDivLoss"] = [](const json& k) {
      Kwargs a("KLDivLoss", k);
      KLDivLossOptions o;
      const auto red = a.get<std::string>("reduction", "mean");
      if (red == "batchmean") {
        o.reduction(torch::kBatchMean);
      } else if (red == "sum") {
        o.reduction(torch::kSum);
      } else if (red == "none") {
        o.reduction(torch::kNone);
      } else if (red == "mean") {
        o.reduction(torch::kMean);
      } else {
        throw ConfigError("KLDivLoss: keyword argument 'reduction': unknown value \"" + red + "\"");
      }
      o.log_target(a.get("log_target", false));
      return a.done(KLDivLoss(o));
    };
    for (auto& [name, factory] : f) reg->add(name, std::move(factory));
    return reg;
  }();
  return *r;
}

torch::nn::AnyModule make(Registry& reg, const char* kind, const std::string& name,
                          const json& kwargs) {
  auto factory = reg.find(name);
  if (!factory) {
    throw ConfigError(std::string("unknown ") + kind + " '" + name + "' (known: " + reg.known() +
                      "). Register it with zanj::register_" + kind + "().");
  }
  return (*factory)(kwargs);
}

}  // namespace

torch::nn::AnyModule make_activation(const std::string& name, const nlohmann::json& kwargs) {
  return make(activations(), "activation", name, kwargs);
}

torch::nn::AnyModule make_loss(const std::string& name, const nlohmann::json& kwargs) {
  return make(losses(), "loss", name, kwargs);
}

void register_activation(const std::string& name, ModuleFactory factory) {
  activations().add(name, std::move(factory));
}

void register_loss(const std::string& name, ModuleFactory factory) {
  losses().add(name, std::move(factory));
}

std::vector<std::string> activation_names() { return activations().names(); }
std::vector<std::string> loss_names() { return losses().names(); }

}  // namespace zanj
