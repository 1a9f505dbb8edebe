// tests/torch_export_fixture.cpp — checkpoints for the test of python/netsplit_torch.py
// (tests/test_torch_export.py). For each kind, a short seeded run on the real CIFAR-10
// through the trainer; the grown kinds split filters at several sites part-way (stream
// groups, whose option-A shortcut maps become general scatters, and inner sites; net2wider
// with noise and random_init, whose shortcut coefficients differ) and train on, so the
// copies diverge. Writes, per kind, the trainer's checkpoint <kind>.safetensors (reloaded
// here through a fresh trainer, which replays the split history and checks the recorded
// channel maps) and <kind>.expected.safetensors: "images" (the first 256 test images,
// normalised), "logits" (netsplit's phase::eval logits on them) and "predictions" (its
// phase::eval top-1 class of every test image, as F32).
// Usage: torch_export_fixture CIFAR10_DIR OUT_DIR   (exit 0 written, 1 failed, 2 usage)
#include <algorithm>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <filesystem>
#include <string>
#include <vector>

#include "netsplit/netsplit.hpp"

using namespace netsplit;
namespace fs = std::filesystem;

namespace {

struct split_plan {
  std::string site;  // a site name, or "inner" for the network's first inner site
  int filter;
  bool random;  // random_init instead of net2wider (eps 0.05)
};

template <class Net>
void make_kind(const std::string& kind, double width, const std::vector<split_plan>& plan, const dataset& train,
               const dataset& test, const channel_stats& stats, const fs::path& out) {
  cpu_context ctx(2);
  train_config cfg;
  cfg.max_iter = 40;
  cfg.batch_size = 64;
  cfg.schedule = constant_lr{0.05};
  cfg.snapshot_final = false;
  cfg.snapshot_dir = out;
  Net net(7, width_multiplier{width});
  trainer<Net> tr(ctx, net, train, test, stats, cfg);
  split_history<Net> history;
  history.attach(tr);
  for (int i = 0; i < 25; ++i) tr.step();
  if (!plan.empty()) {
    auto sites = derive_sites(net);
    std::uint64_t seed = 100;
    for (const auto& p : plan) {
      std::size_t s = 0;
      if (p.site == "inner") {
        while (sites[s].kind != site_kind::inner) ++s;
      } else {
        s = find_site(sites, p.site);
      }
      auto record = p.random ? split_filter(net, sites[s], p.filter, random_init{}, ++seed, &tr.optimizer().state())
                             : split_filter(net, sites[s], p.filter, net2wider{0.05}, ++seed, &tr.optimizer().state());
      record.iteration = tr.iteration();
      history.add(record);
      sites = derive_sites(net);
    }
  }
  while (tr.iteration() < cfg.max_iter) tr.step();
  const auto ckpt = out / (kind + ".safetensors");
  tr.save(ckpt);

  {  // the checkpoint loads back into netsplit (split replay, channel maps) to the same values
    Net fresh(8, width_multiplier{width});
    trainer<Net> tr2(ctx, fresh, train, test, stats, cfg);
    split_history<Net> history2;
    history2.attach(tr2);
    tr2.load(ckpt);
    if (checkpoint::channel_maps_json(fresh) != checkpoint::channel_maps_json(net))
      throw std::runtime_error(kind + ": channel maps differ after reloading");
  }

  batch_loader loader(test, 250, stats, false, 1);
  tensor<float, cpu_backend> images;
  std::vector<int> labels;
  std::vector<float> predictions, first_images, first_logits;
  for (std::size_t b = 0; b < loader.batches_per_epoch(); ++b) {
    loader.next(images, labels);
    if (b == 0) {  // 256 images: the first batch and 6 of the second
      first_images = images.to_host();
      first_logits = net.forward(ctx, images, phase::eval).to_host();
    } else if (b == 1) {
      const auto more = images.to_host();
      first_images.insert(first_images.end(), more.begin(), more.begin() + 6 * 3072);
      tensor<float, cpu_backend> six({6, 3, 32, 32});
      std::copy(more.begin(), more.begin() + 6 * 3072, six.data());
      const auto l = net.forward(ctx, six, phase::eval).to_host();
      first_logits.insert(first_logits.end(), l.begin(), l.end());
    }
    const auto logits = net.forward(ctx, images, phase::eval).to_host();
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const auto* z = logits.data() + i * Net::classes;
      predictions.push_back(static_cast<float>(std::max_element(z, z + Net::classes) - z));
    }
  }
  io::safetensors_file f;
  f.metadata["netsplit.architecture"] = net.architecture();
  f.tensors["images"] = io::tensor_record::from<float>({256, 3, 32, 32}, std::span<const float>(first_images));
  f.tensors["logits"] = io::tensor_record::from<float>({256, Net::classes}, std::span<const float>(first_logits));
  f.tensors["predictions"] = io::tensor_record::from<float>({static_cast<std::int64_t>(predictions.size())},
                                                            std::span<const float>(predictions));
  io::write_file_atomic(out / (kind + ".expected.safetensors"), f);
  std::printf("%s: %s, %zu splits, %lld parameters\n", kind.c_str(), net.architecture().c_str(), plan.size(),
              static_cast<long long>(count_parameters(net)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: torch_export_fixture CIFAR10_DIR OUT_DIR\n");
    return 2;
  }
  try {
    const fs::path data = argv[1], out = argv[2];
    fs::create_directories(out);
    const auto train = load_cifar10(data, split::train);
    const auto test = load_cifar10(data, split::test);
    const auto stats = compute_channel_stats(train);
    const std::vector<split_plan> resnet_plan{
        {"stage1", 0, false}, {"stage1", 3, true}, {"stage2", 5, false}, {"stage3", 2, false}, {"inner", 1, false}};
    make_kind<resnet20<cpu_backend, 10, float, shortcut_a>>("resnet20_baseline", 1.0, {}, train, test, stats, out);
    make_kind<resnet20<cpu_backend, 10, float, shortcut_a>>("resnet20_grown_a", 0.5, resnet_plan, train, test, stats, out);
    make_kind<resnet20<cpu_backend, 10, float, shortcut_b>>("resnet20_grown_b", 0.5, resnet_plan, train, test, stats, out);
    make_kind<vgg11<cpu_backend, 10>>("vgg11_grown", 0.25,
                                      {{"features.0", 2, false}, {"features.8", 1, true}, {"features.25", 4, false}},
                                      train, test, stats, out);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torch_export_fixture: %s\n", e.what());
    return 1;
  }
  return 0;
}
