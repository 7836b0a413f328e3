// SPDX-License-Identifier: MIT
// Empty: the target exists to build the precompiled header every executable reuses.
