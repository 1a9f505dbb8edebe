// parity_export: one seeded training step of a netsplit model (ResNet20 or ResNet56 with
// option-A or -B shortcuts, VGG11 with batch norm; any width multiplier),
// written to a safetensors file that scripts/pytorch_parity.py replays on an independent
// PyTorch definition of the same net and compares.
//
//   parity_export OUT.safetensors [--model resnet20|resnet56|vgg11]
//                 [--width M] [--dtype f32|f64] [--shortcut a|b] [--seed N] [--batch N]
//                 [--conv fastest|direct|winograd_2x2|winograd_4x4]
//
// Defaults: resnet20, width 1, f32, shortcut a (ignored by VGG), seed 2024, batch 16.
// The models the parity test checks, no more: every model type and scalar costs compile
// time (all eight of VGG 11-19 and ResNet 20-56 made this file 2.8x slower to build than
// these three; the other depths and configurations are the same layer types).
// --conv sets the CPU context's convolution algorithm (default fastest, the library's default).
// The file holds, under netsplit's PyTorch-style names:
//   <param>            every parameter before the step          (F32 or F64, the model's scalar)
//   <buffer>           every BatchNorm running statistic before the forward
//   input, labels      the batch: [N, 3, 32, 32] from a seeded normal, I32 labels in [0, 100)
//   logits             [N, 100] from the train-mode forward
//   loss               F64 [1], mean softmax cross-entropy
//   grad.<param>       every parameter gradient after backward
//   updated.<buffer>   every running statistic after the train-mode forward
// and in its metadata the model, width, shortcut (ResNets), architecture string, and the
// counts the script recomputes from its PyTorch definition: `parameters`
// (count_parameters) and `conv_mult_adds` (mult_adds_per_image: convolutions only, per
// image; the classifier is not counted).
// BatchNorm γ, β, running statistics and the classifier bias are drawn away from their
// initial 1/0 values (seeded) so the comparison exercises every term of BatchNorm.
// Exit status: 0 written, 1 a library error, 2 a usage error (the usage line names it).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "netsplit/io/safetensors.hpp"
#include "netsplit/netsplit.hpp"

using namespace netsplit;

namespace {

constexpr int classes = 100;

struct options {
  std::string out;
  std::string model = "resnet20";
  double width = 1.0;
  std::string dtype = "f32";
  std::string shortcut = "a";
  std::uint64_t seed = 2024;
  int batch = 16;
  std::string conv = "fastest";
};

const char* const model_names[] = {"resnet20", "resnet56", "vgg11"};

template <class T>
io::tensor_record record_of(const tensor<T, cpu_backend>& t) {
  std::vector<std::int64_t> shape;
  for (int i = 0; i < t.rank(); ++i) shape.push_back(t.dim(i));
  return io::tensor_record::from<T>(std::move(shape), t.to_host());
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
std::string module_of(const std::string& name) { return name.substr(0, name.rfind('.')); }

template <class Net>
io::safetensors_file run(const options& o) {
  using T = typename Net::scalar_type;
  Net net(o.seed, width_multiplier{o.width});
  rng perturb = rng::derive(o.seed, 1);

  auto set_values = [](tensor<T, cpu_backend>& t, auto&& draw) {
    std::vector<T> v(static_cast<std::size_t>(t.numel()));
    for (auto& x : v) x = static_cast<T>(draw());
    t.from_host(v);
  };
  // Batch norms are the modules with running statistics; the only other bias is the
  // classifier's (convolutions have none).
  std::set<std::string> batch_norms;
  net.visit_buffers([&](const std::string& name, tensor<T, cpu_backend>&) { batch_norms.insert(module_of(name)); });
  net.visit_parameters([&](const std::string& name, tensor<T, cpu_backend>& p, tensor<T, cpu_backend>&) {
    const bool bn = batch_norms.count(module_of(name)) != 0;
    if (bn && ends_with(name, ".weight")) set_values(p, [&] { return 1.0 + 0.25 * perturb.normal(); });
    if (bn && ends_with(name, ".bias")) set_values(p, [&] { return 0.1 * perturb.normal(); });
    if (!bn && ends_with(name, ".bias")) set_values(p, [&] { return 0.1 * perturb.normal(); });
  });
  net.visit_buffers([&](const std::string& name, tensor<T, cpu_backend>& b) {
    if (ends_with(name, "running_mean")) set_values(b, [&] { return 0.1 * perturb.normal(); });
    if (ends_with(name, "running_var")) set_values(b, [&] { return 0.5 + perturb.uniform(); });
  });

  io::safetensors_file f;
  char width[32];
  std::snprintf(width, sizeof width, "%.17g", o.width);
  f.metadata["model"] = o.model;
  f.metadata["width"] = width;
  f.metadata["architecture"] = net.architecture();
  f.metadata["classes"] = std::to_string(classes);
  if (o.model.rfind("resnet", 0) == 0) f.metadata["shortcut"] = o.shortcut == "a" ? "A" : "B";
  f.metadata["dtype"] = std::string(io::dtype_name(io::dtype_of<T>::value));
  f.metadata["seed"] = std::to_string(o.seed);
  f.metadata["batch"] = std::to_string(o.batch);
  f.metadata["conv"] = o.conv;
  f.metadata["bn_eps"] = "1e-5";
  f.metadata["bn_momentum"] = "0.1";
  f.metadata["parameters"] = std::to_string(count_parameters(net));
  f.metadata["conv_mult_adds"] = std::to_string(net.mult_adds_per_image());

  net.visit_parameters([&](const std::string& name, tensor<T, cpu_backend>& p, tensor<T, cpu_backend>&) {
    f.tensors[name] = record_of(p);
  });
  net.visit_buffers([&](const std::string& name, tensor<T, cpu_backend>& b) { f.tensors[name] = record_of(b); });

  rng data = rng::derive(o.seed, 2);
  tensor<T, cpu_backend> x({o.batch, 3, 32, 32});
  set_values(x, [&] { return data.normal(); });
  std::vector<int> labels(static_cast<std::size_t>(o.batch));
  for (auto& l : labels) l = static_cast<int>(data.uniform_int(classes));
  f.tensors["input"] = record_of(x);
  f.tensors["labels"] = io::tensor_record::from<std::int32_t>({o.batch}, labels);

  cpu_context ctx;
  ctx.set_conv_algorithm(*parse_cpu_conv_algorithm(o.conv));  // checked in main
  softmax_cross_entropy<T, cpu_backend> loss_fn;
  const auto& logits = net.forward(ctx, x, phase::train);
  const double loss = loss_fn.forward(ctx, logits, labels);
  net.backward(ctx, loss_fn.backward(), false);

  f.tensors["logits"] = io::tensor_record::from<T>({o.batch, classes}, logits.to_host());
  f.tensors["loss"] = io::tensor_record::from<double>({1}, std::vector<double>{loss});
  net.visit_parameters([&](const std::string& name, tensor<T, cpu_backend>&, tensor<T, cpu_backend>& g) {
    f.tensors["grad." + name] = record_of(g);
  });
  net.visit_buffers([&](const std::string& name, tensor<T, cpu_backend>& b) { f.tensors["updated." + name] = record_of(b); });
  return f;
}

template <class T>
io::safetensors_file run_model(const options& o) {
  const bool a = o.shortcut == "a";
  const std::string& m = o.model;
  if (m == "resnet20") return a ? run<resnet20<cpu_backend, classes, T, shortcut_a>>(o) : run<resnet20<cpu_backend, classes, T, shortcut_b>>(o);
  if (m == "resnet56") return a ? run<resnet56<cpu_backend, classes, T, shortcut_a>>(o) : run<resnet56<cpu_backend, classes, T, shortcut_b>>(o);
  return run<vgg11<cpu_backend, classes, T>>(o);  // the name is checked in main
}

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "parity_export: " << why << "\n"
            << "usage: parity_export OUT.safetensors [--model resnet20|resnet56|vgg11] [--width M]\n"
               "                     [--dtype f32|f64] [--shortcut a|b] [--seed N] [--batch N]\n"
               "                     [--conv fastest|direct|winograd_2x2|winograd_4x4]\n";
  std::exit(2);
}

/// The whole of `text` as a number, else the usage error naming the flag.
template <class N>
N number(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  N v{};
  try {
    if constexpr (std::is_same_v<N, double>) v = std::stod(text, &used);
    else if constexpr (std::is_same_v<N, std::uint64_t>) v = std::stoull(text, &used);
    else v = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || (std::is_unsigned_v<N> && text[0] == '-'))
    usage(flag + " needs a number, got '" + text + "'");
  return v;
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
    if (a == "--model") o.model = value();
    else if (a == "--width") o.width = number<double>(a, value());
    else if (a == "--dtype") o.dtype = value();
    else if (a == "--shortcut") o.shortcut = value();
    else if (a == "--seed") o.seed = number<std::uint64_t>(a, value());
    else if (a == "--batch") o.batch = number<int>(a, value());
    else if (a == "--conv") o.conv = value();
    else if (!a.empty() && a[0] == '-') usage("unknown option " + a);
    else if (o.out.empty()) o.out = a;
    else usage("more than one output file");
  }
  if (o.out.empty()) usage("no output file");
  bool known = false;
  for (const char* m : model_names) known = known || o.model == m;
  if (!known) usage("--model must be resnet20, resnet56 or vgg11, not '" + o.model + "'");
  if (!(o.width > 0 && o.width <= 16)) usage("--width must be in (0, 16]");
  if (o.dtype != "f32" && o.dtype != "f64") usage("--dtype must be f32 or f64");
  if (o.shortcut != "a" && o.shortcut != "b") usage("--shortcut must be a or b");
  if (o.batch < 2) usage("--batch must be at least 2");
  if (!parse_cpu_conv_algorithm(o.conv)) usage("--conv must be fastest, direct, winograd_2x2 or winograd_4x4");
  try {
    io::safetensors_file f = o.dtype == "f32" ? run_model<float>(o) : run_model<double>(o);
    io::write_file_atomic(o.out, f);
    std::cout << "parity_export: wrote " << f.tensors.size() << " tensors to " << o.out << "\n";
  } catch (const std::exception& e) {
    std::cerr << "parity_export: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
