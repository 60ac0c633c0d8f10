// Host (CPU) twin of the fused multi-level RoI Align kernel: the same per-element math (mlra_math.h), looped
// over the output on one thread. Compiles with a plain C++ compiler; needs no CUDA runtime.
#include "maskrt_mlra.h"
#include "mlra_math.h"

namespace
{

template <typename FT, typename RT>
void run_host(maskrt::mlra::Params const& p)
{
    using namespace maskrt::mlra;
    FT* out = static_cast<FT*>(p.output);
    int64_t const bins = p.out_h * p.out_w;
    for (int64_t k = 0; k < p.num_rois; ++k)
    {
        Roi const r = prepare_roi<RT>(p, k);
        for (int64_t c = 0; c < p.channels; ++c)
        {
            int64_t const base = (k * p.channels + c) * bins;
            FT const* plane = nullptr;
            int64_t height = 0;
            int64_t width = 0;
            if (r.level >= 0)
            {
                height = p.height[r.level];
                width = p.width[r.level];
                plane = static_cast<FT const*>(p.features[r.level]) + (r.batch * p.channels + c) * height * width;
            }
            for (int64_t py = 0; py < p.out_h; ++py)
            {
                for (int64_t px = 0; px < p.out_w; ++px)
                {
                    float const v = r.level >= 0 ? pool_bin(plane, height, width, r, py, px, p.mode) : 0.0f;
                    store(out, base + py * p.out_w + px, v);
                }
            }
        }
    }
}

} // namespace

extern "C" MASKRT_MLRA_API int32_t maskrt_mlra_forward_host(int32_t feature_dtype, int32_t roi_dtype,
    int32_t num_levels, const void* const* features, const int64_t* feature_shapes, const float* scales,
    const void* rois, const int64_t* roi_shape, void* output, const int64_t* output_shape, int32_t sampling_ratio,
    int32_t aligned, int32_t mode, float canonical_scale, int32_t canonical_level)
{
    maskrt::mlra::Params p;
    int32_t const status = maskrt::mlra::validate(feature_dtype, roi_dtype, num_levels, features, feature_shapes,
        scales, rois, roi_shape, output, output_shape, sampling_ratio, aligned, mode, canonical_scale,
        canonical_level, &p);
    if (status != MASKRT_MLRA_OK || maskrt::mlra::output_numel(p) == 0)
    {
        return status;
    }
    if (feature_dtype == MASKRT_MLRA_FLOAT32)
    {
        run_host<float, float>(p);
    }
    else if (roi_dtype == MASKRT_MLRA_FLOAT32)
    {
        run_host<uint16_t, float>(p);
    }
    else
    {
        run_host<uint16_t, uint16_t>(p);
    }
    return MASKRT_MLRA_OK;
}
