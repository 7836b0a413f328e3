#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian 12 packages configured_model needs to build, test and run its example.
# Safe to run repeatedly: it only calls apt-get when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libzip-dev zipcmp zipmerge ziptool zlib1g-dev libisal-dev libsimdjson-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libgloo-dev libcurl4-openssl-dev clang-format
  python3 python3-numpy python3-torch
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "install_deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
