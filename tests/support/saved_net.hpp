// SPDX-License-Identifier: MIT
// A saved TrainNet file to read back, and a way to damage it (the read tests share these).
#pragma once

#include <memory>
#include <string>

#include "test_support.hpp"
#include "train_net.hpp"

namespace zanj_test {

/// Saves a TrainNet (seed 7, records loss = [0.5, 0.25]) to `path`, checks the zip, returns it.
inline std::shared_ptr<TrainNet> saved_net(const std::string& path, TrainNetConfig c = {}) {
  torch::manual_seed(7);
  auto net = std::make_shared<TrainNet>(c);
  net->training_records()["loss"] = {0.5, 0.25};
  net->save(path);
  EXPECT_TRUE(SoundZip(path));
  return net;
}

/// Flips a bit in the middle of fc1.weight's stored data.
inline void corrupt_fc1(const std::string& path) {
  const auto archive = zanj::ArchiveReader::open(path);
  const auto offset = archive.data_offset("state_dict/fc1.weight.npy") + 128 + 100;
  std::string bytes = read_bytes(path);
  bytes[offset] ^= 0x10;
  write_bytes(path, bytes);
}

}  // namespace zanj_test
