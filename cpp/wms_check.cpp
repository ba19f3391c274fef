// wms_check: reproduce an RTNeural export's test vectors with a plain C++ GRU.
//
// Build (the export folder holds the generated wms_model.h):
//   g++ -O2 -std=c++17 -I EXPORT_DIR cpp/wms_check.cpp -o wms_check
// Run:
//   ./wms_check EXPORT_DIR/wms_model.json EXPORT_DIR/wms_test_vectors.json [tolerance]
//
// No RTNeural needed (it cannot be fetched everywhere): the network is computed
// here in float, step by step, with the equations of RTNeural's DenseT / GRULayerT
// (PyTorch's GRU, gates r, z, n), from the same JSON that RTNeural::torch_helpers reads. The output activation comes
// from the generated header (wms::applyOutputActivation), so the header's
// constants and Softplus are exercised too. Prints the max abs differences and
// exits 1 when one exceeds the tolerance (default 1e-5), 2 on bad input.
#define WMS_NO_RTNEURAL
#include "wms_model.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "json_mini.h"

namespace
{
using wms_json::Json;
using wms_json::readJson;

using Vec = std::vector<float>;
using Mat = std::vector<Vec>; // [out][in], PyTorch layout

Vec toVec(const Json& j)
{
    Vec v;
    for(const auto& x : j.items)
        v.push_back(static_cast<float>(x.number));
    return v;
}
Mat toMat(const Json& j)
{
    Mat m;
    for(const auto& row : j.items)
        m.push_back(toVec(row));
    return m;
}

// y = W x + b
Vec dense(const Mat& w, const Vec& b, const Vec& x)
{
    Vec y(b);
    for(size_t i = 0; i < w.size(); ++i)
    {
        float acc = 0.0f;
        for(size_t k = 0; k < x.size(); ++k)
            acc += w[i][k] * x[k];
        y[i] += acc;
    }
    return y;
}

void relu(Vec& v)
{
    for(auto& x : v)
        x = x > 0.0f ? x : 0.0f;
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

struct GRU
{
    Mat wih, whh; // [3H][in], [3H][H], gates stacked (r, z, n) as PyTorch stores them
    Vec bih, bhh;
    Vec h;

    void step(const Vec& x)
    {
        const size_t n = h.size();
        Vec gi = dense(wih, bih, x), gh = dense(whh, bhh, h);
        for(size_t i = 0; i < n; ++i)
        {
            float r = sigmoid(gi[i] + gh[i]);
            float z = sigmoid(gi[n + i] + gh[n + i]);
            float c = std::tanh(gi[2 * n + i] + r * gh[2 * n + i]);
            h[i] = (1.0f - z) * c + z * h[i];
        }
    }
};
} // namespace

int main(int argc, char** argv)
{
    if(argc < 3)
    {
        std::fprintf(stderr, "usage: %s wms_model.json wms_test_vectors.json [tolerance]\n", argv[0]);
        return 2;
    }
    const double tol = argc > 3 ? std::atof(argv[3]) : 1e-5;
    try
    {
        const Json model = readJson(argv[1]);
        const Json tv = readJson(argv[2]);

        const Mat encW = toMat(model.at("input_encoder.0.weight"));
        const Vec encB = toVec(model.at("input_encoder.0.bias"));
        std::vector<GRU> grus;
        for(int l = 0; model.has("gru.weight_ih_l" + std::to_string(l)); ++l)
        {
            const std::string s = "_l" + std::to_string(l);
            GRU g { toMat(model.at("gru.weight_ih" + s)), toMat(model.at("gru.weight_hh" + s)),
                    toVec(model.at("gru.bias_ih" + s)), toVec(model.at("gru.bias_hh" + s)), {} };
            g.h.assign(g.whh[0].size(), 0.0f);
            grus.push_back(std::move(g));
        }
        const Mat d0W = toMat(model.at("dense_layers.0.weight"));
        const Vec d0B = toVec(model.at("dense_layers.0.bias"));
        const Mat d2W = toMat(model.at("dense_layers.2.weight"));
        const Vec d2B = toVec(model.at("dense_layers.2.bias"));

        if(static_cast<int>(encW[0].size()) != wms::kNumInputs || static_cast<int>(d2B.size()) != wms::kNumBins
           || static_cast<int>(grus.size()) != wms::kNumLayers)
        {
            std::fprintf(stderr, "wms_model.h does not match the JSON (inputs %zu, bins %zu, layers %zu)\n",
                         encW[0].size(), d2B.size(), grus.size());
            return 2;
        }

        const Mat inputs = toMat(tv.at("inputs"));
        const Mat expPre = toMat(tv.at("pre_activation"));
        const Mat expOut = toMat(tv.at("outputs"));
        double maxPre = 0.0, maxOut = 0.0;
        for(size_t t = 0; t < inputs.size(); ++t)
        {
            Vec v = dense(encW, encB, inputs[t]);
            relu(v);
            for(auto& g : grus)
            {
                g.step(v);
                v = g.h;
            }
            Vec d = dense(d0W, d0B, v);
            relu(d);
            Vec y = dense(d2W, d2B, d);
            for(size_t k = 0; k < y.size(); ++k)
                maxPre = std::max(maxPre, std::fabs(double(y[k]) - expPre[t][k]));
            wms::applyOutputActivation(y.data());
            for(size_t k = 0; k < y.size(); ++k)
                maxOut = std::max(maxOut, std::fabs(double(y[k]) - expOut[t][k]));
        }
        std::printf("steps %zu\nmax_abs_diff_pre_activation %.9g\nmax_abs_diff_outputs %.9g\n", inputs.size(),
                    maxPre, maxOut);
        return (maxPre <= tol && maxOut <= tol) ? 0 : 1;
    }
    catch(const std::exception& e)
    {
        std::fprintf(stderr, "wms_check: %s\n", e.what());
        return 2;
    }
}
