// wms_rtneural_check: run an RTNeural export through the real RTNeural library.
//
// Needs an RTNeural checkout (https://github.com/jatinchowdhury18/RTNeural; its Eigen and
// nlohmann json are vendored under modules/). From the repository root:
//   STL backend (RTNeural's default):
//     g++ -O2 -std=c++17 -DRTNEURAL_DEFAULT_ALIGNMENT=16 -I RTNEURAL -I RTNEURAL/modules/json \
//         -I EXPORT_DIR cpp/wms_rtneural_check.cpp -o wms_rtneural_check
//   Eigen backend (what JUCE plugins usually build; see docs/EXPORT.md for the stack limit):
//     add -DRTNEURAL_USE_EIGEN=1 -I RTNEURAL/modules/Eigen -DEIGEN_STACK_ALLOCATION_LIMIT=0
// Run:
//   ./wms_rtneural_check EXPORT_DIR/wms_model.json EXPORT_DIR/wms_test_vectors.json
//
// Loads the model with wms::loadModel (RTNeural's torch_helpers), feeds the 1000 test
// inputs in order with the state carried, and prints the max abs differences to the
// expected outputs before and after wms::applyOutputActivation. Exits 1 above 1e-4.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "wms_model.h"

int main(int argc, char** argv)
{
    if(argc < 3)
    {
        std::fprintf(stderr, "usage: %s wms_model.json wms_test_vectors.json\n", argv[0]);
        return 2;
    }
    nlohmann::json modelJson, vectors;
    std::ifstream(argv[1]) >> modelJson;
    std::ifstream(argv[2]) >> vectors;
    // ModelType holds every weight inline: on the heap, never on an audio thread's stack.
    auto model = std::make_unique<wms::ModelType>();
    wms::loadModel(modelJson, *model);
    const auto& inputs = vectors.at("inputs");
    const auto& pre = vectors.at("pre_activation");
    const auto& out = vectors.at("outputs");
    double maxPre = 0.0, maxOut = 0.0;
    float x[wms::kNumInputs], y[wms::kNumBins];
    for(size_t t = 0; t < inputs.size(); ++t)
    {
        for(int i = 0; i < wms::kNumInputs; ++i)
            x[i] = inputs[t][i].get<float>();
        model->forward(x);
        std::copy_n(model->getOutputs(), wms::kNumBins, y);
        for(int k = 0; k < wms::kNumBins; ++k)
            maxPre = std::max(maxPre, (double) std::abs(y[k] - pre[t][k].get<float>()));
        wms::applyOutputActivation(y);
        for(int k = 0; k < wms::kNumBins; ++k)
            maxOut = std::max(maxOut, (double) std::abs(y[k] - out[t][k].get<float>()));
    }
    std::printf("steps %zu\nmax_abs_diff_pre_activation %.3g\nmax_abs_diff_outputs %.3g\n",
                inputs.size(), maxPre, maxOut);
    return (maxPre <= 1e-4 && maxOut <= 1e-4) ? 0 : 1;
}
