// A stand-in for <RTNeural/RTNeural.h>, for checking generated wms_model.h files
// where RTNeural itself cannot be fetched. NOT RTNeural: it declares only what the
// generated header uses (ModelT, DenseT, ReLuActivationT, GRULayerT,
// torch_helpers::loadDense / loadGRU, nlohmann::json), with the same names and
// template parameters as RTNeural's compile-time API, and checks at compile time
// that consecutive layer sizes chain and at run time that every load call hits a
// layer of the right kind whose sizes match the JSON tensors it reads
// (PyTorch layouts: Linear weight [out][in]; GRU weight_ih [3*out][in],
// weight_hh [3*out][out], biases [3*out]).
#pragma once

#include <stdexcept>
#include <string>
#include <tuple>

#include "json_mini.h"

namespace nlohmann
{
using json = wms_json::Json;
}

namespace RTNeural
{
template <typename T, int in, int out>
struct DenseT
{
    static constexpr int in_size = in, out_size = out;
    static constexpr bool is_dense = true, is_gru = false;
    bool loaded = false;
};

template <typename T, int n>
struct ReLuActivationT
{
    static constexpr int in_size = n, out_size = n;
    static constexpr bool is_dense = false, is_gru = false;
    bool loaded = true; // nothing to load
};

template <typename T, int in, int out>
struct GRULayerT
{
    static constexpr int in_size = in, out_size = out;
    static constexpr bool is_dense = false, is_gru = true;
    bool loaded = false;
};

namespace detail
{
template <typename... L>
struct Chain;
template <typename A>
struct Chain<A>
{
    static constexpr bool ok = true;
};
template <typename A, typename B, typename... R>
struct Chain<A, B, R...>
{
    static constexpr bool ok = A::out_size == B::in_size && Chain<B, R...>::ok;
};
} // namespace detail

template <typename T, int in, int out, typename... Layers>
class ModelT
{
    using First = std::tuple_element_t<0, std::tuple<Layers...>>;
    using Last = std::tuple_element_t<sizeof...(Layers) - 1, std::tuple<Layers...>>;
    static_assert(First::in_size == in, "first layer input size != model input size");
    static_assert(Last::out_size == out, "last layer output size != model output size");
    static_assert(detail::Chain<Layers...>::ok, "layer sizes do not chain");

public:
    template <int i>
    auto& get() noexcept { return std::get<i>(layers); }
    void reset() noexcept { was_reset = true; }
    bool allLoaded() const
    {
        return std::apply([](const auto&... l) { return (l.loaded && ...); }, layers);
    }
    bool was_reset = false;

private:
    std::tuple<Layers...> layers;
};

namespace torch_helpers
{
namespace detail
{
inline void expectShape(const nlohmann::json& j, const std::string& key, size_t rows, size_t cols)
{
    const auto& t = j.at(key);
    bool ok = t.items.size() == rows;
    for(const auto& r : t.items)
        ok = ok && (cols == 0 ? r.kind == wms_json::Json::Number : r.items.size() == cols);
    if(!ok)
        throw std::runtime_error(key + ": shape does not match the layer it is loaded into");
}
} // namespace detail

template <typename T, typename DenseType>
void loadDense(const nlohmann::json& modelJson, const std::string& layerPrefix, DenseType& dense, bool = true)
{
    static_assert(DenseType::is_dense, "loadDense called on a layer that is not a DenseT");
    detail::expectShape(modelJson, layerPrefix + "weight", DenseType::out_size, DenseType::in_size);
    detail::expectShape(modelJson, layerPrefix + "bias", DenseType::out_size, 0);
    dense.loaded = true;
}

template <typename T, typename GRUType>
void loadGRU(const nlohmann::json& modelJson, const std::string& layerPrefix, GRUType& gru, bool = true)
{
    static_assert(GRUType::is_gru, "loadGRU called on a layer that is not a GRULayerT");
    constexpr size_t n = GRUType::out_size;
    // Like RTNeural's loadGRU: the suffix is always _l0.
    detail::expectShape(modelJson, layerPrefix + "weight_ih_l0", 3 * n, GRUType::in_size);
    detail::expectShape(modelJson, layerPrefix + "weight_hh_l0", 3 * n, n);
    detail::expectShape(modelJson, layerPrefix + "bias_ih_l0", 3 * n, 0);
    detail::expectShape(modelJson, layerPrefix + "bias_hh_l0", 3 * n, 0);
    gru.loaded = true;
}
} // namespace torch_helpers
} // namespace RTNeural
