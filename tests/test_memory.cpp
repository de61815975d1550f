// Memory behaviour of loading and packing: LoadMode::Share (parameters adopt the mapped file's
// bytes), release_file_pages (clean file pages leave the process, written pages stay), models
// built without torchvision's init, and WeightPacking::Lean. Every check compares values, so a
// shortcut that saved memory by changing a result fails here.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <vector>

#include "test_util.h"

using namespace strata;

namespace {

// A temporary file removed at scope exit.
struct TempFile {
    std::string path;
    explicit TempFile(const std::string& name) : path("/tmp/strata_test_" + std::to_string(::getpid()) + "_" + name) {}
    ~TempFile() { std::remove(path.c_str()); }
};

std::shared_ptr<models::ResNet> detgen_resnet18(models::Init init = models::Init::Torchvision) {
    auto model = models::create("resnet18", 1000, 0, init);
    fill_deterministic(*model, 2024);
    return model;
}

// Whether this process can read its own page flags (Linux /proc/self/pagemap).
bool pagemap_readable() {
    const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    uint64_t entry = 0;
    const bool ok = ::pread(fd, &entry, sizeof entry, 0) == static_cast<ssize_t>(sizeof entry);
    ::close(fd);
    return ok;
}

// Number of [data, data + size)'s whole pages that are resident in this process.
size_t resident_pages(const void* data, size_t size) {
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + size) / page * page;
    const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    size_t n = 0;
    for (uintptr_t a = begin; a < end; a += page) {
        uint64_t entry = 0;
        REQUIRE(::pread(fd, &entry, sizeof entry, static_cast<off_t>(a / page * 8)) == 8);
        if (entry >> 63) ++n;
    }
    ::close(fd);
    return n;
}

}  // namespace

TEST_CASE("memory: LoadMode::Share adopts the file's float32 bytes; the results equal a copied load") {
    TempFile file("share.safetensors");
    save(detgen_resnet18()->state_dict(), file.path);
    const StateDict state = load(file.path);

    auto shared = models::create("resnet18", 1000, 0, models::Init::None);
    shared->load_state_dict(state, true, LoadMode::Share);
    auto copied = models::create("resnet18", 1000, 0, models::Init::None);
    copied->load_state_dict(state);

    const StateDict mine = shared->state_dict(), theirs = copied->state_dict();
    int adopted = 0;
    for (const auto& [key, t] : mine) {
        const Tensor& src = state.at(key);
        const bool aligned = reinterpret_cast<uintptr_t>(src.raw_data()) % alignof(float) == 0;
        if (src.dtype() == DType::Float32 && aligned) {
            INFO(key);
            REQUIRE(t.raw_data() == src.raw_data());  // no copy
            ++adopted;
        }
        REQUIRE(theirs.at(key).raw_data() != src.raw_data());  // a copied load owns its memory
    }
    REQUIRE(adopted > 100);  // every float32 tensor of resnet18 in a strata-written file

    const Tensor x = strata_test::random_tensor({1, 3, 64, 64}, "share-x");
    for (WeightPacking packing : {WeightPacking::Fast, WeightPacking::Lean}) {
        RunOptions o{Backend::Cpu, 2};
        o.packing = packing;
        const Tensor a = shared->forward(x, o), b = copied->forward(x, o);
        STRATA_REQUIRE_CLOSE(a, b, 0.0, "shared vs copied weights");  // bitwise: same packing
    }
}

TEST_CASE("memory: a Copy load into a shared model writes its own memory, never the source's") {
    TempFile file("copy_after_share.safetensors");
    save(detgen_resnet18()->state_dict(), file.path);
    const StateDict state = load(file.path);
    const Tensor before = state.at("conv1.weight").clone();

    auto a = models::create("resnet18", 1000, 0, models::Init::None);
    a->load_state_dict(state, true, LoadMode::Share);
    auto b = models::create("resnet18", 1000, 0, models::Init::None);
    b->load_state_dict(state, true, LoadMode::Share);  // a and b share the same bytes

    StateDict zeros;
    for (const auto& [key, t] : a->state_dict()) zeros.insert(key, Tensor::zeros(t.shape(), t.dtype()));
    a->load_state_dict(zeros);  // Copy: must not write through to the file's bytes (or b's)

    REQUIRE(a->state_dict().at("conv1.weight").raw_data() != state.at("conv1.weight").raw_data());
    STRATA_REQUIRE_CLOSE(state.at("conv1.weight"), before, 0.0, "source after a Copy load");
    STRATA_REQUIRE_CLOSE(b->state_dict().at("conv1.weight"), before, 0.0, "the other shared model");
    REQUIRE(a->state_dict().at("conv1.weight").item_at({0, 0, 0, 0}) == 0.0);
}

TEST_CASE("memory: Share copies what it cannot adopt (float16 sources), converting as a Copy load does") {
    Conv2d conv(2, 3, 3);
    StateDict half;
    const Tensor w = strata_test::random_tensor({3, 2, 3, 3}, "share-half");
    half.insert("weight", w.to(DType::Float16));
    half.insert("bias", Tensor::zeros({3}).to(DType::Float16));
    conv.load_state_dict(half, true, LoadMode::Share);
    REQUIRE(conv.weight().dtype() == DType::Float32);
    REQUIRE(conv.weight().raw_data() != half.at("weight").raw_data());
    STRATA_REQUIRE_CLOSE(conv.weight(), w, 1e-3, "float16 weight loaded");  // half's 11-bit mantissa
}

TEST_CASE("memory: models built with Init::None and loaded strictly equal initialised ones") {
    const StateDict state = detgen_resnet18()->state_dict();
    auto bare = models::create("resnet18", 1000, 0, models::Init::None);
    bare->load_state_dict(state);
    const Tensor x = strata_test::random_tensor({1, 3, 48, 48}, "init-none-x");
    const RunOptions o{Backend::Cpu, 1};
    STRATA_REQUIRE_CLOSE(bare->forward(x, o), detgen_resnet18()->forward(x, o), 0.0, "Init::None + load");
    // and a skipped init really is skipped: conv weights start at zero
    REQUIRE(models::create("resnet18", 1000, 0, models::Init::None)->state_dict().at("conv1.weight").item_at({1, 2, 3, 4}) == 0.0);
}

TEST_CASE("memory: release_file_pages drops clean file pages, keeps written ones, and never changes contents") {
    if (!pagemap_readable()) {
        WARN("skipped: /proc/self/pagemap is not readable here, so release_file_pages drops nothing");
        return;
    }
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t n = 64 * page / sizeof(float);
    TempFile file("pages.bin");
    {
        std::vector<float> values(n);
        for (size_t i = 0; i < n; ++i) values[i] = static_cast<float>(i);
        std::ofstream(file.path, std::ios::binary).write(reinterpret_cast<const char*>(values.data()),
                                                         static_cast<std::streamsize>(n * sizeof(float)));
    }
    const auto mapped = MappedFile::open(file.path);
    float* f = reinterpret_cast<float*>(const_cast<unsigned char*>(mapped->data()));
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += f[i];  // fault every page in
    REQUIRE(resident_pages(f, n * sizeof(float)) == 64);
    const size_t written = 5 * page / sizeof(float) + 7;  // page 5 becomes a private copy
    f[written] = -1.0f;

    const size_t dropped = release_file_pages(f, n * sizeof(float));
    REQUIRE(dropped == 63 * page);                        // all but the written page
    REQUIRE(resident_pages(f, n * sizeof(float)) == 1);  // the written page stays
    REQUIRE(f[written] == -1.0f);                         // and keeps its value
    double again = 0;
    for (size_t i = 0; i < n; ++i) again += (i == written ? static_cast<float>(i) : f[i]);
    REQUIRE(again == sum);  // dropped pages read back from the file unchanged

    // Anonymous memory is never dropped.
    std::vector<float> heap(n, 2.0f);
    REQUIRE(release_file_pages(heap.data(), n * sizeof(float)) == 0);
    REQUIRE(heap[n / 2] == 2.0f);
}

TEST_CASE("memory: after the first call, a shared model's packed conv weights are out of the resident set") {
    if (!pagemap_readable()) {
        WARN("skipped: /proc/self/pagemap is not readable here");
        return;
    }
    TempFile file("released.safetensors");
    save(detgen_resnet18()->state_dict(), file.path);
    auto model = models::create("resnet18", 1000, 0, models::Init::None);
    model->load_state_dict(load(file.path), true, LoadMode::Share);
    model->forward(strata_test::random_tensor({1, 3, 64, 64}, "released-x"), RunOptions{Backend::Cpu, 2});
    // Every conv weight was packed and then released. The kernel may map a few pages back when a
    // neighbouring tensor in the file is read later (it maps whole page-cache folios around a
    // fault; the fc weights, read by every call, follow layer4.1's): seen up to 704 KB at the
    // tail of layer4.1.conv2.weight. So: at most 1/8 of any one weight, 5% of them all.
    size_t total = 0, resident = 0;
    for (const auto& [key, w] : model->state_dict()) {
        if (key.find("conv") == std::string::npos || w.nbytes() < (256u << 10)) continue;
        const size_t pages = w.nbytes() / static_cast<size_t>(::sysconf(_SC_PAGESIZE));
        const size_t in = resident_pages(w.raw_data(), w.nbytes());
        INFO(key << ": " << in << " of " << pages << " pages resident");
        REQUIRE(in * 8 <= pages);
        total += pages;
        resident += in;
    }
    INFO(resident << " of " << total << " conv weight pages resident");
    REQUIRE(total > 10000);
    REQUIRE(resident * 20 <= total);
    // still readable (from the file), with the values it had
    const Tensor w = model->state_dict().at("layer4.1.conv2.weight");
    REQUIRE(w.item_at({3, 4, 1, 2}) == detgen_resnet18()->state_dict().at("layer4.1.conv2.weight").item_at({3, 4, 1, 2}));
}
