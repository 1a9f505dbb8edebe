// netsplit/train/evaluate.hpp — test-set evaluation: mean loss, top-1 and top-5 accuracy.
// Runs the network in eval mode (BatchNorm running statistics) over every test image once,
// in order, without augmentation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <type_traits>
#include <vector>

#include "netsplit/backend/cpu/cpu_backend.hpp"
#include "netsplit/core/errors.hpp"
#include "netsplit/core/tensor.hpp"
#include "netsplit/layers/layer.hpp"

namespace netsplit {

struct classification_totals {
  double loss_sum = 0;
  std::int64_t top1 = 0, top5 = 0, samples = 0;
  void add(const classification_totals& o) {
    loss_sum += o.loss_sum;
    top1 += o.top1;
    top5 += o.top5;
    samples += o.samples;
  }
  double mean_loss() const { return samples ? loss_sum / static_cast<double>(samples) : 0.0; }
  double top1_rate() const { return samples ? static_cast<double>(top1) / static_cast<double>(samples) : 0.0; }
  double top5_rate() const { return samples ? static_cast<double>(top5) / static_cast<double>(samples) : 0.0; }
};

/// Scores host logits [n, classes] (row-major) against labels. A sample counts as top-k
/// correct when fewer than k classes have a strictly larger logit than the true class
/// (ties resolve in the sample's favour, as torch.topk does for the true class first).
template <class T>
classification_totals score_logits(std::span<const T> logits, std::span<const int> labels, int classes) {
  NETSPLIT_EXPECT(classes > 0 && logits.size() == labels.size() * static_cast<std::size_t>(classes),
                  "score_logits got ", logits.size(), " logits for ", labels.size(), " labels of ", classes,
                  " classes");
  classification_totals t;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const T* z = logits.data() + i * static_cast<std::size_t>(classes);
    const int y = labels[i];
    NETSPLIT_EXPECT(y >= 0 && y < classes, "label ", y, " of sample ", i, " is outside [0, ", classes, ")");
    const double zmax = *std::max_element(z, z + classes);
    double sum = 0;
    int larger = 0;
    for (int k = 0; k < classes; ++k) {
      sum += std::exp(static_cast<double>(z[k]) - zmax);
      if (z[k] > z[y]) ++larger;
    }
    t.loss_sum += std::log(sum) + zmax - static_cast<double>(z[y]);
    t.top1 += larger < 1;
    t.top5 += larger < 5;
    ++t.samples;
  }
  return t;
}

/// Evaluates net on every batch the loader yields in one epoch (the loader must be in
/// eval mode: sequential, unaugmented).
template <class Net, class Loader>
classification_totals evaluate(typename Net::context_type& ctx, Net& net, Loader& loader) {
  using T = typename Net::scalar_type;
  using B = typename Net::backend_type;
  tensor<T, B> images;
  tensor<float, cpu_backend> staged;  // loaders fill host float tensors; other backends copy once
  std::vector<int> labels;
  classification_totals total;
  const auto batches = loader.batches_per_epoch();
  for (std::int64_t b = 0; b < static_cast<std::int64_t>(batches); ++b) {
    if constexpr (std::is_same_v<tensor<T, B>, tensor<float, cpu_backend>>) {  // the loader's own type
      loader.next(images, labels);
    } else {
      loader.next(staged, labels);
      const auto host = staged.to_host();
      images.resize(staged.shape());
      images.from_host(std::vector<T>(host.begin(), host.end()));
    }
    const auto host = net.forward(ctx, images, phase::infer).to_host();
    total.add(score_logits<T>(host, labels, Net::classes));
  }
  return total;
}

}  // namespace netsplit
