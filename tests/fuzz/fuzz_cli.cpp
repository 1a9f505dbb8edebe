// Fuzz target: the trainer program's command line, cifar_cli::parse_options. The input is
// split at NUL bytes into argv[1..] (at most 64 arguments). A rejection must be a
// cli_error; on acceptance the options must lie in their documented ranges (a growing
// run's TPM window and split iteration inside the run), the TPM metric must exist and the
// learning-rate schedule must read back from its own text form.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cli.hpp"
#include "fuzz_common.hpp"

using namespace netsplit_fuzz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args{"cifar100_resnet20"};
  std::string cur;
  for (std::size_t i = 0; i < size && args.size() <= 64; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  if (size > 0 && args.size() <= 64) args.push_back(cur);
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);  // as the C runtime gives it

  try {
    const auto o = cifar_cli::parse_options(static_cast<int>(args.size()), argv.data());
    NETSPLIT_FUZZ_CHECK(o.batch_size >= 1 && o.batch_size <= 65536);
    NETSPLIT_FUZZ_CHECK(o.threads >= 0 && o.threads <= 1024);
    NETSPLIT_FUZZ_CHECK(o.max_iter >= 0 && o.train_limit >= 0 && o.test_limit >= 0);
    NETSPLIT_FUZZ_CHECK(o.snapshot_every >= 0 && o.test_interval >= 0);
    for (auto s : o.snapshot_at) NETSPLIT_FUZZ_CHECK(s >= 1);
    NETSPLIT_FUZZ_CHECK(o.momentum >= 0 && o.momentum <= 1 && o.weight_decay >= 0 && o.weight_decay <= 1);
    NETSPLIT_FUZZ_CHECK(!o.out_dir.empty());
    NETSPLIT_FUZZ_CHECK(o.dataset == "auto" || o.dataset == "cifar10" || o.dataset == "cifar100");
    NETSPLIT_FUZZ_CHECK(o.shortcut == "A" || o.shortcut == "B");
    // split requests: a growing run's window and split iteration lie inside the run
    if (o.mode == "study" || o.split_at_given) {
      NETSPLIT_FUZZ_CHECK(0 <= o.tpm_begin && o.tpm_begin < o.tpm_end && o.tpm_end <= o.max_iter);
      NETSPLIT_FUZZ_CHECK(o.tpm_end <= o.split_at && o.split_at < o.max_iter);
    }
    NETSPLIT_FUZZ_CHECK(o.mode == "train" || o.mode == "study");
    // a study resumes in its own folder (--resume DIR is its output folder); no snapshot
    NETSPLIT_FUZZ_CHECK(o.mode != "study" || (o.from_snapshot.empty() && (o.resume.empty() || o.resume == o.out_dir)));
    // the model is one the program can build, at a positive width; --shortcut only on ResNets
    NETSPLIT_FUZZ_CHECK(std::find(cifar_cli::model_names().begin(), cifar_cli::model_names().end(), o.model) !=
                        cifar_cli::model_names().end());
    NETSPLIT_FUZZ_CHECK(o.width_mult > 0 && o.width_mult <= 16);
    NETSPLIT_FUZZ_CHECK(!o.shortcut_given || o.model.rfind("resnet", 0) == 0);
    NETSPLIT_FUZZ_CHECK(o.splits >= 1 && !o.seeds.empty() && !o.split_sites.empty());
    (void)netsplit::make_tpm_metric(o.tpm);  // a name the parser accepted must exist
    const std::string text = o.schedule.describe();
    NETSPLIT_FUZZ_CHECK(netsplit::parse_lr_schedule(text).describe() == text);
    if (verbose()) std::fprintf(stderr, "accepted\n");
  } catch (const cifar_cli::cli_error& e) {
    // a clean rejection (the program exits 2)
    if (verbose()) std::fprintf(stderr, "rejected: %s\n", e.what());
  } catch (const std::exception& e) {
    finding(std::string("parse_options threw ") + typeid(e).name() + ": " + e.what());
  }
  return 0;
}
