// CUDA kernel of the fused multi-level RoI Align: one thread per output element (grid-stride), the math in
// mlra_math.h shared with the host twin.
#include <cuda_runtime.h>

#include "maskrt_mlra.h"
#include "mlra_math.h"

namespace
{

constexpr int kThreads = 256;

template <typename FT, typename RT>
__global__ void __launch_bounds__(kThreads) mlra_kernel(maskrt::mlra::Params const p, int64_t total)
{
    FT* out = static_cast<FT*>(p.output);
    int64_t const stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    {
        maskrt::mlra::store(out, i, maskrt::mlra::compute_element<FT, RT>(p, i));
    }
}

template <typename FT, typename RT>
int32_t launch(maskrt::mlra::Params const& p, int64_t total, cudaStream_t stream)
{
    // Enough blocks to fill any current GPU many times over; the grid-stride loop covers the rest.
    int64_t const wanted = (total + kThreads - 1) / kThreads;
    unsigned const blocks = static_cast<unsigned>(wanted < (int64_t(1) << 20) ? wanted : (int64_t(1) << 20));
    mlra_kernel<FT, RT><<<blocks, kThreads, 0, stream>>>(p, total);
    return cudaGetLastError() == cudaSuccess ? MASKRT_MLRA_OK : MASKRT_MLRA_ERR_CUDA;
}

} // namespace

extern "C" MASKRT_MLRA_API int32_t maskrt_mlra_has_cuda(void)
{
    return 1;
}

extern "C" MASKRT_MLRA_API int32_t maskrt_mlra_forward_cuda(int32_t feature_dtype, int32_t roi_dtype,
    int32_t num_levels, const void* const* features, const int64_t* feature_shapes, const float* scales,
    const void* rois, const int64_t* roi_shape, void* output, const int64_t* output_shape, int32_t sampling_ratio,
    int32_t aligned, int32_t mode, float canonical_scale, int32_t canonical_level, struct CUstream_st* stream)
{
    maskrt::mlra::Params p;
    int32_t const status = maskrt::mlra::validate(feature_dtype, roi_dtype, num_levels, features, feature_shapes,
        scales, rois, roi_shape, output, output_shape, sampling_ratio, aligned, mode, canonical_scale,
        canonical_level, &p);
    int64_t const total = status == MASKRT_MLRA_OK ? maskrt::mlra::output_numel(p) : 0;
    if (status != MASKRT_MLRA_OK || total == 0)
    {
        return status;
    }
    cudaStream_t const s = stream;
    if (feature_dtype == MASKRT_MLRA_FLOAT32)
    {
        return launch<float, float>(p, total, s);
    }
    if (roi_dtype == MASKRT_MLRA_FLOAT32)
    {
        return launch<uint16_t, float>(p, total, s);
    }
    return launch<uint16_t, uint16_t>(p, total, s);
}
