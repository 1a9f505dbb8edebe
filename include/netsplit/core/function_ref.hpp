// netsplit/core/function_ref.hpp — a non-owning reference to a callable of one signature
// (two pointers: the callable's address and a function that calls it). Composite layers
// take their parameter and buffer visitors through it, so a block's walk is compiled once
// per block type instead of once per block type and caller's lambda: in the example
// program's heaviest unit those walks were 23% of the function code (`nm --size-sort`,
// g++ 12 -O2, 2026-12-06). The callable must outlive the reference: pass a lambda directly
// to the call that takes it, never store a reference made from a temporary.
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace netsplit {

template <class Signature>
class function_ref;

template <class R, class... Args>
class function_ref<R(Args...)> {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, function_ref> && std::is_invocable_r_v<R, F&, Args...>)
  function_ref(F&& f) noexcept  // NOLINT: implicit, as a lambda argument converts to it
      : callable_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* c, Args... args) -> R {
          auto& callable = *static_cast<std::remove_reference_t<F>*>(c);
          if constexpr (std::is_void_v<R>)
            std::invoke(callable, std::forward<Args>(args)...);
          else
            return std::invoke(callable, std::forward<Args>(args)...);
        }) {}

  R operator()(Args... args) const { return call_(callable_, std::forward<Args>(args)...); }

 private:
  void* callable_;
  R (*call_)(void*, Args...);
};

}  // namespace netsplit
