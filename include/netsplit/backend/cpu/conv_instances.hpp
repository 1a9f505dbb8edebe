// netsplit/backend/cpu/conv_instances.hpp — the convolution engine's float entry points as
// explicit instantiations, for programs that compile the engine once instead of in every
// translation unit. Header-only use (the default) sees nothing here. Defining
// NETSPLIT_SEPARATE_CPU_KERNELS in every translation unit of a program declares the entry
// points (`extern template`), so no unit instantiates them; the one unit that also defines
// NETSPLIT_DEFINE_CPU_KERNELS before its first netsplit include instantiates them. The
// compiled code is the same either way (same flags, same templates); what changes is where it
// is compiled: one of the example program's units, compiled alone, took 86 s header-only and
// 81 s with the engine declared (g++ 12 -O3, AMD EPYC, 2026-12-05; docs/architecture.md).
#pragma once

#include "netsplit/backend/cpu/conv_kernels.hpp"
#include "netsplit/backend/cpu/winograd.hpp"

#if defined(NETSPLIT_DEFINE_CPU_KERNELS)
#define NETSPLIT_CPU_KERNEL_INSTANCE template
#elif defined(NETSPLIT_SEPARATE_CPU_KERNELS)
#define NETSPLIT_CPU_KERNEL_INSTANCE extern template
#endif

#ifdef NETSPLIT_CPU_KERNEL_INSTANCE
namespace netsplit::detail::cpu_conv {
// Every call cpu_backend makes into the engine (the rest of the engine is reached only
// through these, so it is not compiled where they are declared extern).
NETSPLIT_CPU_KERNEL_INSTANCE void forward_with<float>(winograd_tile, cpu_context&, const conv2d_desc&, const float*,
                                                      const float*, float*, const conv_epilogue<float>*);
NETSPLIT_CPU_KERNEL_INSTANCE void winograd_backward_data<float>(cpu_context&, const conv2d_desc&, winograd_tile,
                                                                const float*, const float*, float*,
                                                                const conv_epilogue<float>*);
NETSPLIT_CPU_KERNEL_INSTANCE void winograd_backward_weights<winograd::f4x4, float>(cpu_context&, const conv2d_desc&,
                                                                                   const float*, const float*, float*);
NETSPLIT_CPU_KERNEL_INSTANCE void winograd_backward_weights<winograd::f2x2, float>(cpu_context&, const conv2d_desc&,
                                                                                   const float*, const float*, float*);
NETSPLIT_CPU_KERNEL_INSTANCE void winograd_s2::backward_weights<float>(cpu_context&, const conv2d_desc&, const float*,
                                                                     const float*, float*);
NETSPLIT_CPU_KERNEL_INSTANCE void backward<float>(cpu_context&, const conv2d_desc&, const float*, const float*,
                                                  const float*, float*, float*, const float*);
}  // namespace netsplit::detail::cpu_conv
#undef NETSPLIT_CPU_KERNEL_INSTANCE
#endif
