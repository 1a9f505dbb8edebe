// parity_export: one seeded ResNet20 training step of netsplit, written to a safetensors file
// that scripts/pytorch_parity.py replays on an independent PyTorch ResNet20 and compares.
//
//   parity_export OUT.safetensors [--dtype f32|f64] [--shortcut a|b] [--seed N] [--batch N]
//                 [--conv fastest|direct|winograd_2x2|winograd_4x4]
//
// --conv sets the CPU context's convolution algorithm (default fastest, the library's default).
// The file holds, under netsplit's PyTorch-style names:
//   <param>            every parameter before the step          (F32 or F64, the model's scalar)
//   <buffer>           every BatchNorm running statistic before the forward
//   input, labels      the batch: [N, 3, 32, 32] from a seeded normal, I32 labels in [0, 100)
//   logits             [N, 100] from the train-mode forward
//   loss               F64 [1], mean softmax cross-entropy
//   grad.<param>       every parameter gradient after backward
//   updated.<buffer>   every running statistic after the train-mode forward
// BatchNorm γ, β, running statistics and the classifier bias are drawn away from their
// initial 1/0 values (seeded) so the comparison exercises every term of BatchNorm.
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "netsplit/io/safetensors.hpp"
#include "netsplit/netsplit.hpp"

using namespace netsplit;

namespace {

struct options {
  std::string out;
  std::string dtype = "f32";
  std::string shortcut = "a";
  std::uint64_t seed = 2024;
  int batch = 16;
  std::string conv = "fastest";
};

template <class T>
io::tensor_record record_of(const tensor<T, cpu_backend>& t) {
  std::vector<std::int64_t> shape;
  for (int i = 0; i < t.rank(); ++i) shape.push_back(t.dim(i));
  return io::tensor_record::from<T>(std::move(shape), t.to_host());
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool is_batch_norm(const std::string& name) {
  return name.rfind("bn", 0) == 0 || name.find(".bn") != std::string::npos;
}

template <class T, class Shortcut>
io::safetensors_file run(const options& o) {
  using net_type = resnet20<cpu_backend, 100, T, Shortcut>;
  net_type net(o.seed);
  rng perturb = rng::derive(o.seed, 1);

  auto set_values = [](tensor<T, cpu_backend>& t, auto&& draw) {
    std::vector<T> v(static_cast<std::size_t>(t.numel()));
    for (auto& x : v) x = static_cast<T>(draw());
    t.from_host(v);
  };
  net.visit_parameters([&](const std::string& name, tensor<T, cpu_backend>& p, tensor<T, cpu_backend>&) {
    if (is_batch_norm(name) && ends_with(name, ".weight")) set_values(p, [&] { return 1.0 + 0.25 * perturb.normal(); });
    if (is_batch_norm(name) && ends_with(name, ".bias")) set_values(p, [&] { return 0.1 * perturb.normal(); });
    if (name == "linear.bias") set_values(p, [&] { return 0.1 * perturb.normal(); });
  });
  net.visit_buffers([&](const std::string& name, tensor<T, cpu_backend>& b) {
    if (ends_with(name, "running_mean")) set_values(b, [&] { return 0.1 * perturb.normal(); });
    if (ends_with(name, "running_var")) set_values(b, [&] { return 0.5 + perturb.uniform(); });
  });

  io::safetensors_file f;
  f.metadata["model"] = "resnet20";
  f.metadata["classes"] = "100";
  f.metadata["shortcut"] = Shortcut::name;
  f.metadata["dtype"] = std::string(io::dtype_name(io::dtype_of<T>::value));
  f.metadata["seed"] = std::to_string(o.seed);
  f.metadata["batch"] = std::to_string(o.batch);
  f.metadata["conv"] = o.conv;
  f.metadata["bn_eps"] = "1e-5";
  f.metadata["bn_momentum"] = "0.1";

  net.visit_parameters([&](const std::string& name, tensor<T, cpu_backend>& p, tensor<T, cpu_backend>&) {
    f.tensors[name] = record_of(p);
  });
  net.visit_buffers([&](const std::string& name, tensor<T, cpu_backend>& b) { f.tensors[name] = record_of(b); });

  rng data = rng::derive(o.seed, 2);
  tensor<T, cpu_backend> x({o.batch, 3, 32, 32});
  set_values(x, [&] { return data.normal(); });
  std::vector<int> labels(static_cast<std::size_t>(o.batch));
  for (auto& l : labels) l = static_cast<int>(data.uniform_int(100));
  f.tensors["input"] = record_of(x);
  f.tensors["labels"] = io::tensor_record::from<std::int32_t>({o.batch}, labels);

  cpu_context ctx;
  ctx.set_conv_algorithm(*parse_cpu_conv_algorithm(o.conv));  // checked in main
  softmax_cross_entropy<T, cpu_backend> loss_fn;
  const auto& logits = net.forward(ctx, x, phase::train);
  const double loss = loss_fn.forward(ctx, logits, labels);
  net.backward(ctx, loss_fn.backward(), false);

  f.tensors["logits"] = io::tensor_record::from<T>({o.batch, 100}, logits.to_host());
  f.tensors["loss"] = io::tensor_record::from<double>({1}, std::vector<double>{loss});
  net.visit_parameters([&](const std::string& name, tensor<T, cpu_backend>&, tensor<T, cpu_backend>& g) {
    f.tensors["grad." + name] = record_of(g);
  });
  net.visit_buffers([&](const std::string& name, tensor<T, cpu_backend>& b) { f.tensors["updated." + name] = record_of(b); });
  return f;
}

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "parity_export: " << why << "\n"
            << "usage: parity_export OUT.safetensors [--dtype f32|f64] [--shortcut a|b] [--seed N] [--batch N]\n"
               "                     [--conv fastest|direct|winograd_2x2|winograd_4x4]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value after " + a);
      return argv[++i];
    };
    if (a == "--dtype") o.dtype = value();
    else if (a == "--shortcut") o.shortcut = value();
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--batch") o.batch = std::stoi(value());
    else if (a == "--conv") o.conv = value();
    else if (!a.empty() && a[0] == '-') usage("unknown option " + a);
    else if (o.out.empty()) o.out = a;
    else usage("more than one output file");
  }
  if (o.out.empty()) usage("no output file");
  if (o.dtype != "f32" && o.dtype != "f64") usage("--dtype must be f32 or f64");
  if (o.shortcut != "a" && o.shortcut != "b") usage("--shortcut must be a or b");
  if (o.batch < 2) usage("--batch must be at least 2");
  if (!parse_cpu_conv_algorithm(o.conv)) usage("--conv must be fastest, direct, winograd_2x2 or winograd_4x4");
  try {
    io::safetensors_file f;
    if (o.dtype == "f32") f = o.shortcut == "a" ? run<float, shortcut_a>(o) : run<float, shortcut_b>(o);
    else f = o.shortcut == "a" ? run<double, shortcut_a>(o) : run<double, shortcut_b>(o);
    io::write_file_atomic(o.out, f);
    std::cout << "parity_export: wrote " << f.tensors.size() << " tensors to " << o.out << "\n";
  } catch (const std::exception& e) {
    std::cerr << "parity_export: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
