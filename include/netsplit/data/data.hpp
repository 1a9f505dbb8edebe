// netsplit/data/data.hpp — the data module: CIFAR-10/100 binary readers (cifar.hpp),
// per-channel normalisation (normalization.hpp), pad/crop/flip augmentation
// (augmentation.hpp) and the resumable mini-batch loader (batch_loader.hpp).
#pragma once

#include "netsplit/data/augmentation.hpp"
#include "netsplit/data/batch_loader.hpp"
#include "netsplit/data/cifar.hpp"
#include "netsplit/data/normalization.hpp"
