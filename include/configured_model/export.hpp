// SPDX-License-Identifier: MIT
// What the library exports. It is compiled with hidden visibility (-fvisibility=hidden): a
// shared libconfigured_model exports the declarations of the public headers, each of which
// brackets its declarations with CONFIGURED_MODEL_API_BEGIN / CONFIGURED_MODEL_API_END, and
// nothing of src/ (its private code). Static builds are unaffected.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
/// Starts a region of declarations the library exports.
#define CONFIGURED_MODEL_API_BEGIN _Pragma("GCC visibility push(default)")
/// Ends it.
#define CONFIGURED_MODEL_API_END _Pragma("GCC visibility pop")
/// Exports one declaration outside such a region.
#define CONFIGURED_MODEL_API __attribute__((visibility("default")))
#else
#define CONFIGURED_MODEL_API_BEGIN
#define CONFIGURED_MODEL_API_END
#define CONFIGURED_MODEL_API
#endif
