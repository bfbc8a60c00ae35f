#pragma once
// What kiln-cc --kiln-probe prints: the worker's health probe runs it as a
// container's init and checks for it (worker/health.h).

namespace kiln::cc {
inline constexpr const char* kKilnProbeAnswer = "kiln-cc probe: a container ran me";
}  // namespace kiln::cc
