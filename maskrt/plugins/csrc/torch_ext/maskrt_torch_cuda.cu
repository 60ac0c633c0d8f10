// CUDA kernels of maskrt's two custom PyTorch ops, for torch.library's CUDA dispatch key
// (maskrt/ops/cuda_kernels.py compiles this file on demand with torch.utils.cpp_extension and registers them).
//
//  * multilevel_roi_align: the fused multi-level RoI Align kernel of ../multilevel_roi_align (mlra_math.h, the
//    same per-element code as the TensorRT plugin and the host twin), on fp32 or fp16 maps with fp32 RoIs.
//  * nms_keep_mask: per-image, per-category greedy NMS that writes a keep mask, entirely on the device: the
//    caller sorts the boxes (score descending, then category, both stable) with torch ops and passes where
//    each category's run starts and ends; one thread block per (category, image) walks its run in score order
//    and suppresses with IoU > threshold. Invalid boxes are masked by the caller (category past the last), never
//    compacted, so every shape is fixed and nothing is read back by the host.
//
// Both enqueue on the current stream of the tensors' device and never synchronise. A launch error is reported
// with CUDA's own text (cudaGetErrorString): "no kernel image is available for execution on the device", a
// driver older than the runtime, and so on.
#include <torch/extension.h>

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "maskrt_mlra.h"
#include "mlra_math.h"

namespace
{

constexpr int kThreads = 256;

void check_launch(char const* what)
{
    cudaError_t const err = cudaGetLastError();
    TORCH_CHECK(err == cudaSuccess, "maskrt ", what, ": CUDA kernel launch failed: ", cudaGetErrorString(err),
        " (", cudaGetErrorName(err), ")");
}

// ---------------------------------------------------------------------------------------------------------------
// Fused multi-level RoI Align

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

torch::Tensor multilevel_roi_align(std::vector<torch::Tensor> features, torch::Tensor rois, std::vector<double> scales,
    int64_t output_height, int64_t output_width, int64_t sampling_ratio, bool aligned, std::string const& mode,
    int64_t canonical_scale, int64_t canonical_level)
{
    TORCH_CHECK(!features.empty() && features.size() <= MASKRT_MLRA_MAX_LEVELS,
        "maskrt multilevel_roi_align: 1 to ", MASKRT_MLRA_MAX_LEVELS, " feature maps, got ", features.size());
    TORCH_CHECK(scales.size() == features.size(), "maskrt multilevel_roi_align: one scale per map");
    TORCH_CHECK(mode == "avg" || mode == "max", "maskrt multilevel_roi_align: mode must be avg or max");
    auto const dtype = features[0].scalar_type();
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf,
        "maskrt multilevel_roi_align: maps must be float32 or float16, got ", dtype);
    c10::cuda::CUDAGuard guard(features[0].device());
    // The kernel reads NCHW; channels-last maps are copied (one copy per map).
    std::vector<torch::Tensor> maps;
    std::vector<void const*> pointers;
    std::vector<int64_t> shapes;
    std::vector<float> fscales;
    for (size_t l = 0; l < features.size(); ++l)
    {
        TORCH_CHECK(features[l].is_cuda() && features[l].device() == features[0].device(),
            "maskrt multilevel_roi_align: every map must be on the same CUDA device");
        TORCH_CHECK(features[l].scalar_type() == dtype, "maskrt multilevel_roi_align: maps must share one dtype");
        TORCH_CHECK(features[l].dim() == 4, "maskrt multilevel_roi_align: maps must be (N, C, H, W)");
        maps.push_back(features[l].contiguous());
        pointers.push_back(maps.back().data_ptr());
        for (int d = 0; d < 4; ++d)
        {
            shapes.push_back(maps.back().size(d));
        }
        fscales.push_back(static_cast<float>(scales[l]));
    }
    auto const r = rois.to(features[0].device(), at::kFloat).contiguous();
    TORCH_CHECK(r.dim() == 2 && r.size(1) == 5, "maskrt multilevel_roi_align: rois must be (K, 5)");
    auto out = at::empty({r.size(0), maps[0].size(1), output_height, output_width}, maps[0].options());
    int64_t const roi_shape[2] = {r.size(0), r.size(1)};
    int64_t const out_shape[4] = {out.size(0), out.size(1), out.size(2), out.size(3)};
    int32_t const ftype = dtype == at::kHalf ? MASKRT_MLRA_FLOAT16 : MASKRT_MLRA_FLOAT32;
    maskrt::mlra::Params p;
    int32_t const status = maskrt::mlra::validate(ftype, MASKRT_MLRA_FLOAT32, static_cast<int32_t>(maps.size()),
        pointers.data(), shapes.data(), fscales.data(), r.data_ptr(), roi_shape, out.data_ptr(), out_shape,
        static_cast<int32_t>(sampling_ratio), aligned ? 1 : 0, mode == "max" ? MASKRT_MLRA_MODE_MAX : MASKRT_MLRA_MODE_AVG,
        static_cast<float>(canonical_scale), static_cast<int32_t>(canonical_level), &p);
    TORCH_CHECK(status == MASKRT_MLRA_OK, "maskrt multilevel_roi_align: ", maskrt_mlra_status_string(status));
    int64_t const total = maskrt::mlra::output_numel(p);
    if (total == 0)
    {
        return out;
    }
    int64_t const wanted = (total + kThreads - 1) / kThreads;
    unsigned const blocks = static_cast<unsigned>(wanted < (int64_t(1) << 20) ? wanted : (int64_t(1) << 20));
    cudaStream_t const stream = c10::cuda::getCurrentCUDAStream().stream();
    if (ftype == MASKRT_MLRA_FLOAT32)
    {
        mlra_kernel<float, float><<<blocks, kThreads, 0, stream>>>(p, total);
    }
    else
    {
        mlra_kernel<uint16_t, float><<<blocks, kThreads, 0, stream>>>(p, total);
    }
    check_launch("multilevel_roi_align");
    return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Greedy NMS per (category, image) on sorted runs

__device__ __forceinline__ float iou(float4 const a, float4 const b)
{
    // As torchvision's kernel: areas without +1, inter / (area_a + area_b - inter), fp32.
    float const area_a = __fmul_rn(__fsub_rn(a.z, a.x), __fsub_rn(a.w, a.y));
    float const area_b = __fmul_rn(__fsub_rn(b.z, b.x), __fsub_rn(b.w, b.y));
    float const w = fmaxf(__fsub_rn(fminf(a.z, b.z), fmaxf(a.x, b.x)), 0.0f);
    float const h = fmaxf(__fsub_rn(fminf(a.w, b.w), fmaxf(a.y, b.y)), 0.0f);
    float const inter = __fmul_rn(w, h);
    return __fdiv_rn(inter, __fsub_rn(__fadd_rn(area_a, area_b), inter));
}

// grid (num_categories, batch); boxes (B, N, 4) sorted; order (B, N) int64: sorted position -> original index;
// starts/ends (B, C) int64: the run of each category; removed: B * N bytes of zeroed scratch, or nullptr to use
// N bytes of dynamic shared memory; keep (B, N) bool, zeroed.
__global__ void __launch_bounds__(kThreads) nms_kernel(float4 const* __restrict__ boxes,
    int64_t const* __restrict__ order, int64_t const* __restrict__ starts, int64_t const* __restrict__ ends,
    uint8_t* removed_global, bool* __restrict__ keep, int64_t n, int64_t num_categories, float threshold,
    int64_t max_per_category)
{
    extern __shared__ uint8_t removed_shared[];
    int64_t const c = blockIdx.x;
    int64_t const b = blockIdx.y;
    int64_t const s = starts[b * num_categories + c];
    int64_t const e = ends[b * num_categories + c];
    if (e <= s)
    {
        return;
    }
    uint8_t* removed = removed_global ? removed_global + b * n + s : removed_shared;
    if (!removed_global)
    {
        for (int64_t j = threadIdx.x; j < e - s; j += blockDim.x)
        {
            removed[j] = 0;
        }
        __syncthreads();
    }
    float4 const* run = boxes + b * n + s;
    int64_t kept = 0;
    for (int64_t i = 0; i < e - s; ++i)
    {
        if (removed[i]) // every thread reads the same value: writes happen only before the last barrier
        {
            continue;
        }
        if (max_per_category > 0 && kept >= max_per_category)
        {
            break;
        }
        ++kept;
        if (threadIdx.x == 0)
        {
            keep[b * n + order[b * n + s + i]] = true;
        }
        float4 const box = run[i];
        for (int64_t j = i + 1 + threadIdx.x; j < e - s; j += blockDim.x)
        {
            if (!removed[j] && iou(box, run[j]) > threshold)
            {
                removed[j] = 1;
            }
        }
        __syncthreads();
    }
}

// Largest run kept in shared memory (bytes); longer runs use global scratch.
constexpr int64_t kSharedRun = 32 * 1024;

torch::Tensor nms_keep_mask(torch::Tensor sorted_boxes, torch::Tensor order, torch::Tensor starts, torch::Tensor ends,
    double iou_threshold, int64_t max_per_category)
{
    TORCH_CHECK(sorted_boxes.is_cuda() && sorted_boxes.dim() == 3 && sorted_boxes.size(2) == 4,
        "maskrt nms: boxes must be a (B, N, 4) CUDA tensor");
    c10::cuda::CUDAGuard guard(sorted_boxes.device());
    auto const boxes = sorted_boxes.to(at::kFloat).contiguous();
    auto const ord = order.to(at::kLong).contiguous();
    auto const st = starts.to(at::kLong).contiguous();
    auto const en = ends.to(at::kLong).contiguous();
    int64_t const batch = boxes.size(0);
    int64_t const n = boxes.size(1);
    int64_t const categories = st.size(1);
    TORCH_CHECK(ord.sizes() == at::IntArrayRef({batch, n}) && st.sizes() == en.sizes() && st.size(0) == batch,
        "maskrt nms: order (B, N), starts and ends (B, C) expected");
    auto keep = at::zeros({batch, n}, boxes.options().dtype(at::kBool));
    if (batch == 0 || n == 0 || categories == 0)
    {
        return keep;
    }
    TORCH_CHECK(categories <= 65535 && batch <= 65535, "maskrt nms: at most 65535 categories and images");
    at::Tensor scratch;
    size_t shared = 0;
    if (n > kSharedRun)
    {
        scratch = at::zeros({batch, n}, boxes.options().dtype(at::kByte));
    }
    else
    {
        shared = static_cast<size_t>(n);
    }
    cudaStream_t const stream = c10::cuda::getCurrentCUDAStream().stream();
    dim3 const grid(static_cast<unsigned>(categories), static_cast<unsigned>(batch));
    nms_kernel<<<grid, kThreads, shared, stream>>>(reinterpret_cast<float4 const*>(boxes.data_ptr<float>()),
        ord.data_ptr<int64_t>(), st.data_ptr<int64_t>(), en.data_ptr<int64_t>(),
        scratch.defined() ? scratch.data_ptr<uint8_t>() : nullptr, keep.data_ptr<bool>(), n, categories,
        static_cast<float>(iou_threshold), max_per_category);
    check_launch("batched_nms_mask");
    return keep;
}

std::string runtime_versions()
{
    int runtime = 0;
    int driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaError_t const err = cudaDriverGetVersion(&driver);
    return "runtime " + std::to_string(runtime) + ", driver " + std::to_string(driver)
        + (err == cudaSuccess ? std::string() : std::string(" (") + cudaGetErrorString(err) + ")");
}

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("multilevel_roi_align", &multilevel_roi_align, "fused multi-level RoI Align (CUDA)");
    m.def("nms_keep_mask", &nms_keep_mask, "greedy NMS per (category, image) on sorted runs -> keep mask (CUDA)");
    m.def("runtime_versions", &runtime_versions, "CUDA runtime and driver versions");
}
