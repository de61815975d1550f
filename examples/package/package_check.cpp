// Uses the installed strata the way a downstream project would, through <strata/strata.h> only,
// and prints one line per check; scripts/test.sh builds it with CMake and with pkg-config,
// against the static and the shared library. Any failure exits 1.
//   package_check DIR   (DIR: a writable folder for the weights and npy files it writes)
#include <strata/strata.h>

#include <cstdio>
#include <memory>
#include <iostream>
#include <string>

static_assert(STRATA_VERSION_MAJOR >= 0 && STRATA_VERSION_MINOR >= 0 && STRATA_VERSION_PATCH >= 0);

namespace {
int failures = 0;
void check(bool ok, const std::string& what) {
    std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
    if (!ok) ++failures;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: package_check DIR\n";
        return 2;
    }
    const std::string dir = argv[1];
    check(std::string(STRATA_VERSION_STRING) ==
              std::to_string(STRATA_VERSION_MAJOR) + "." + std::to_string(STRATA_VERSION_MINOR) + "." +
                  std::to_string(STRATA_VERSION_PATCH),
          "version " STRATA_VERSION_STRING);

    // Weights out and back in: safetensors written by save(), read by load().
    auto m = strata::models::resnet18(10, 1);
    strata::StateDict state = m->state_dict();
    strata::save(state, dir + "/resnet18.safetensors");
    auto m2 = strata::models::create("resnet18", 10, 2);
    m2->load_state_dict(strata::load(dir + "/resnet18.safetensors"));
    check(m2->state_dict().size() == state.size(), "save/load safetensors: " + std::to_string(state.size()) + " tensors");

    // npy
    strata::save_npy(strata::Tensor::full({2, 3}, 1.5f), dir + "/x.npy");
    const strata::Tensor x = strata::load_npy(dir + "/x.npy");
    check(x.shape() == strata::Shape{2, 3} && x.data<float>()[5] == 1.5f, "save_npy/load_npy " + strata::shape_str(x.shape()));

    // The library's exceptions are caught as strata::Error here (typeinfo shared across the boundary).
    bool caught = false;
    try {
        strata::load(dir + "/missing.safetensors");
    } catch (const strata::Error& e) {
        caught = !std::string(e.what()).empty();
    }
    check(caught, "strata::Error thrown by the library, caught by its user");

    // The getter: shape inference, then a forward pass that agrees with it.
    strata::IntermediateLayerGetter getter(*m, {{"layer2", "c3"}, {"layer4", "c5"}});
    const auto info = getter.output_info({1, 3, 64, 64});
    const auto out = getter(strata::Tensor::full({1, 3, 64, 64}, 0.25f));
    check(info.size() == 2 && out.size() == 2 && info[0].shape == out[0].second.shape() &&
              info[1].stride == 32,
          "IntermediateLayerGetter: " + info[0].name + " " + strata::shape_str(info[0].shape) + ", " + info[1].name +
              " " + strata::shape_str(info[1].shape));
    // Images: a 2x1 PNG (written by PIL) decoded and preprocessed; links libpng and libjpeg, which a
    // static libstrata passes on through strataConfig.cmake and strata.pc.
    static const unsigned char png[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x7b, 0x40, 0xe8, 0xdd, 0x00, 0x00, 0x00,
        0x0f, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xcf, 0xc0, 0xc0, 0xd0, 0xf0, 0x1f, 0x00, 0x08, 0x00,
        0x02, 0x7f, 0x25, 0x3e, 0xfc, 0x09, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    const strata::image::Image img = strata::image::decode(png, sizeof png, "tiny.png");
    const strata::Tensor pixels = strata::image::Compose({std::make_shared<strata::image::Resize>(4),
                                                          std::make_shared<strata::image::ToTensor>()})(img);
    check(img.width == 2 && img.height == 1 && img.pixels[0] == 255 && img.pixels[4] == 128 &&
              pixels.shape() == strata::Shape{3, 4, 8},
          "image::decode (PNG) and a Resize + ToTensor transform: " + strata::shape_str(pixels.shape()));
    check(strata::models::imagenet_classes().size() == 1000, "imagenet_classes: " +
                                                                  strata::models::imagenet_classes()[0] + ", ...");
    check(strata::cuda_built() || strata::cuda_device_count() == 0, std::string("cuda_built: ") +
                                                                         (strata::cuda_built() ? "yes" : "no"));
    std::remove((dir + "/resnet18.safetensors").c_str());
    std::remove((dir + "/x.npy").c_str());
    return failures ? 1 : 0;
}
