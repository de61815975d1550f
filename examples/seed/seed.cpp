// The seed example, in C++:
//   m = torchvision.models.resnet18()
//   new_m = IntermediateLayerGetter(m, {'layer1': 'feat1', 'layer3': 'feat2'})
//   out = new_m(torch.rand(1, 3, 224, 224))
//   print([(k, v.shape) for k, v in out.items()])
#include <strata/strata.h>

#include <iostream>

int main(int argc, char** argv) {
    auto m = strata::models::resnet18();
    if (argc > 1) m->load_state_dict(strata::load(argv[1]));  // e.g. a converted torchvision file
    strata::IntermediateLayerGetter new_m(*m, {{"layer1", "feat1"}, {"layer3", "feat2"}});
    auto out = new_m(strata::Tensor::full({1, 3, 224, 224}, 0.5f));
    std::cout << "[";
    for (size_t i = 0; i < out.size(); ++i)
        std::cout << (i ? ", " : "") << "('" << out[i].first << "', " << strata::shape_str(out[i].second.shape()) << ")";
    std::cout << "]\n";
}
