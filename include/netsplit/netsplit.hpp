// netsplit/netsplit.hpp — umbrella header: everything a host-only user needs.
// Contains no CUDA annotations; the CUDA backend has its own header and target.
#pragma once

#include "netsplit/backend/backend.hpp"
#include "netsplit/backend/cpu/cpu_backend.hpp"
#include "netsplit/core/errors.hpp"
#include "netsplit/core/random.hpp"
#include "netsplit/core/shape.hpp"
#include "netsplit/core/tensor.hpp"
#include "netsplit/layers/batch_norm.hpp"
#include "netsplit/layers/conv2d.hpp"
#include "netsplit/layers/layer.hpp"
#include "netsplit/layers/linear.hpp"
#include "netsplit/layers/pooling.hpp"
#include "netsplit/layers/relu.hpp"
#include "netsplit/layers/residual.hpp"
#include "netsplit/layers/sequential.hpp"
#include "netsplit/layers/shortcut.hpp"
#include "netsplit/layers/softmax_cross_entropy.hpp"
#include "netsplit/models/resnet.hpp"
