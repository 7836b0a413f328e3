// SPDX-License-Identifier: MIT
// Saves and reads a tiny model through the installed package; exit 0 when the round trip holds.
#include <torch/torch.h>

#include <configured_model/configured_model.hpp>
#include <iostream>

namespace consumer {
struct TinyConfig {
  int64_t width = 3;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(TinyConfig, width)

class Tiny : public zanj::ConfiguredModel<Tiny, TinyConfig> {
 public:
  explicit Tiny(TinyConfig c) : ConfiguredModel(c) {
    fc = register_module("fc", torch::nn::Linear(config().width, 1));
  }
  torch::nn::Linear fc{nullptr};
};
}  // namespace consumer

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "tiny.zanj";
  auto model = std::make_shared<consumer::Tiny>(consumer::TinyConfig{4});
  model->save(path);
  auto again = consumer::Tiny::read(path);
  const bool same =
      torch::equal(model->fc->weight, again->fc->weight) && again->config().width == 4;
  std::cout << "consumer round trip with configured_model " << zanj::kLibraryVersion << ": "
            << (same ? "ok" : "MISMATCH") << "\n";
  return same ? 0 : 1;
}
