// Loading what a getter keeps: the checkpoints people have (a segmentation model's `backbone.`, a
// detection model's `backbone.body.`, a getter's own state_dict) hold the children a getter runs
// and not the rest (no `fc`), and detection backbones use FrozenBatchNorm2d, which has no
// `num_batches_tracked`. load_for_request loads such a file strictly for the children that run:
//
//   IntermediateLayerGetter getter(*model, {{"layer4", "out"}, {"layer3", "aux"}});
//   load_for_request(*model, strata::load(path, {.strip_prefix = "backbone."}),
//                    getter.named_children().keys());     // the kept children: conv1 .. layer4
//
// The rule, per model key (model.state_dict()):
//   - under a kept child (or the model's own parameters): required; missing is an error, except
//     a BatchNorm's `num_batches_tracked`, which is never required (it has no effect on
//     inference; torch fills it in too): it keeps its value, 0 in a fresh model;
//   - under a child that is not kept (not run): optional, and neither checked nor loaded: that
//     child keeps what it had (e.g. a checkpoint's `fc` of another class count is fine).
// Per file key: a key that is not a key of the model is an error (a wrong prefix or another
// architecture); shape and dtype mismatches of loaded keys are errors. All problems are reported
// in one Error; nothing is changed when it fails.
#pragma once
#include <string>
#include <vector>

#include <strata/export.h>

#include "module.h"

namespace strata {

struct RequestLoadSummary {
    size_t loaded = 0;                      // tensors copied or shared in
    std::vector<std::string> not_loaded;    // file keys of children that are not kept (ignored)
    std::vector<std::string> kept_default;  // num_batches_tracked keys absent from the file
};

// The problems load_for_request would report, as its error message; "" when it would load.
STRATA_API std::string check_for_request(const Module& model, const StateDict& state,
                              const std::vector<std::string>& kept_children);

STRATA_API RequestLoadSummary load_for_request(Module& model, const StateDict& state,
                                    const std::vector<std::string>& kept_children,
                                    LoadMode mode = LoadMode::Copy);

// The model keys load_for_request requires for `kept_children` (no num_batches_tracked).
STRATA_API std::vector<std::string> required_keys(const Module& model, const std::vector<std::string>& kept_children);

}  // namespace strata
