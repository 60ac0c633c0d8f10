/*
 * Per-element math of the fused multi-level RoI Align, shared by the CUDA kernel and the host (CPU) twin.
 *
 * Every function that computes a value is MLRA_HD: __host__ __device__ under nvcc, plain inline under a host
 * compiler, so both launchers run the same code. Results follow maskrt.ops.poolers.multilevel_roi_align to
 * the last bit:
 *
 *  - arithmetic is fp32, one rounding per operation in the reference's order (no fused multiply-add: the
 *    device path uses the __f*_rn intrinsics, the host build passes -ffp-contract=off);
 *  - with fp16 RoIs the level assignment rounds every intermediate to fp16, as PyTorch does for half tensors
 *    (the pooling itself always runs in fp32, on RoIs converted exactly to fp32);
 *  - fp16 features are read as fp32 and the bin is rounded to fp16 once, at the store (round to nearest even).
 *
 * Nothing here reads memory outside the tensors described by Params: sample positions outside the map are
 * rejected before any index is formed, and RoIs that cannot be pooled never reach a read.
 */
#ifndef MASKRT_MLRA_MATH_H
#define MASKRT_MLRA_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "maskrt_mlra.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define MLRA_HD __host__ __device__ __forceinline__
#else
#define MLRA_HD inline
#endif

namespace maskrt
{
namespace mlra
{

// ---------------------------------------------------------------------------------------------------------------
// fp32 operations with exactly one rounding each (never contracted into an FMA).

MLRA_HD float add(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

MLRA_HD float sub(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

MLRA_HD float mul(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

MLRA_HD float div(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

MLRA_HD bool is_finite(float v)
{
    return v == v && v - v == 0.0f;  // false for NaN and for +-inf (inf - inf is NaN)
}

// Maximum that propagates NaN from either side, like torch.maximum.
MLRA_HD float nan_max(float a, float b)
{
    return (a > b || a != a) ? a : b;
}

// ---------------------------------------------------------------------------------------------------------------
// IEEE half <-> float, own implementation on the host (round to nearest even), intrinsics on the device.

MLRA_HD uint32_t float_bits(float f)
{
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

MLRA_HD float bits_float(uint32_t u)
{
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

MLRA_HD float half_to_float(uint16_t h)
{
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(h));
#else
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t const exponent = (h >> 10) & 0x1fu;
    uint32_t const mantissa = h & 0x3ffu;
    if (exponent == 0x1fu)
    {
        return bits_float(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN (payload kept)
    }
    if (exponent != 0)
    {
        return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    }
    // Zero or subnormal: mantissa * 2^-24, exact in fp32.
    float const magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
#endif
}

MLRA_HD uint16_t float_to_half(float f)
{
#if defined(__CUDA_ARCH__)
    return __half_as_ushort(__float2half_rn(f));
#else
    uint32_t const x = float_bits(f);
    uint16_t const sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    uint32_t const ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
    {
        return static_cast<uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));  // inf, quiet NaN
    }
    if (ax >= 0x477ff000u)
    {
        return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
    }
    if (ax >= 0x38800000u)
    {
        // Normal half: rebias the exponent, keep 10 mantissa bits, round the 13 dropped ones to nearest even.
        uint32_t base = (ax >> 13) - (112u << 10);
        uint32_t const rest = ax & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (base & 1u)))
        {
            ++base;
        }
        return static_cast<uint16_t>(sign | base);
    }
    // Subnormal half (or zero): value / 2^-24 rounded to nearest even.
    uint32_t const exponent = ax >> 23;
    if (exponent < 102u)
    {
        return sign;  // below 2^-25: rounds to zero (2^-25 itself is a tie, also to zero)
    }
    uint32_t const mantissa = (ax & 0x7fffffu) | 0x800000u;
    uint32_t const shift = 126u - exponent;  // 14 ... 24
    uint32_t q = mantissa >> shift;
    uint32_t const rest = mantissa & ((1u << shift) - 1u);
    uint32_t const halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (q & 1u)))
    {
        ++q;
    }
    return static_cast<uint16_t>(sign | q);
#endif
}

// Round an fp32 value to the nearest fp16 value (kept as fp32) when `to_half`, else return it unchanged.
MLRA_HD float round_if(bool to_half, float v)
{
    return to_half ? half_to_float(float_to_half(v)) : v;
}

// Element access for the two storage types (fp16 is carried as its bit pattern).
MLRA_HD float load(float const* p, int64_t i)
{
    return p[i];
}

MLRA_HD float load(uint16_t const* p, int64_t i)
{
    return half_to_float(p[i]);
}

MLRA_HD void store(float* p, int64_t i, float v)
{
    p[i] = v;
}

MLRA_HD void store(uint16_t* p, int64_t i, float v)
{
    p[i] = float_to_half(v);
}

// ---------------------------------------------------------------------------------------------------------------
// Arguments after validation.

struct Params
{
    int32_t num_levels;
    void const* features[MASKRT_MLRA_MAX_LEVELS];
    int64_t height[MASKRT_MLRA_MAX_LEVELS];
    int64_t width[MASKRT_MLRA_MAX_LEVELS];
    float scale[MASKRT_MLRA_MAX_LEVELS];
    int64_t batch;
    int64_t channels;
    int64_t num_rois;
    int64_t out_h;
    int64_t out_w;
    void const* rois;
    void* output;
    int32_t feature_dtype;
    int32_t roi_dtype;
    int32_t sampling_ratio;
    int32_t aligned;
    int32_t mode;
    float canonical_scale;
    int32_t canonical_level;
    int32_t k_min;  // FPN level of the first map, int(-log2(scale[0]))
    int32_t k_max;  // FPN level of the last map, int(-log2(scale[num_levels - 1]))
};

// ---------------------------------------------------------------------------------------------------------------
// Level assignment: floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6) clamped to
// [k_min, k_max], minus k_min. -1 when the expression is NaN (a box with negative area): the reference
// assigns such a RoI to no level, so it pools to zeros.

MLRA_HD int32_t level_of_box(
    float x1, float y1, float x2, float y2, bool half_rois, float canonical_scale, int32_t canonical_level,
    int32_t k_min, int32_t k_max)
{
    float const w = round_if(half_rois, sub(x2, x1));
    float const h = round_if(half_rois, sub(y2, y1));
    float const area = round_if(half_rois, mul(w, h));
    float const size = round_if(half_rois, sqrtf(area));
    float const ratio = round_if(half_rois, div(size, canonical_scale));
    float const lg = round_if(half_rois, log2f(ratio));
    float const shifted = round_if(half_rois, add(static_cast<float>(canonical_level), lg));
    float const eps = round_if(half_rois, 1e-6f);
    float const level = floorf(round_if(half_rois, add(shifted, eps)));
    if (level != level)
    {
        return -1;
    }
    float clamped = level < static_cast<float>(k_min) ? static_cast<float>(k_min) : level;
    clamped = clamped > static_cast<float>(k_max) ? static_cast<float>(k_max) : clamped;
    return static_cast<int32_t>(clamped) - k_min;
}

// One RoI, ready to pool. level < 0 means "pools to zeros".
struct Roi
{
    int32_t level;
    int64_t batch;
    float x0;
    float y0;
    float bin_w;
    float bin_h;
    int32_t grid_w;
    int32_t grid_h;
};

MLRA_HD int32_t adaptive_grid(float bin)
{
    float const g = ceilf(bin);
    if (!(g > 0.0f))
    {
        return 0;  // NaN, zero or negative: no samples
    }
    return g >= static_cast<float>(MASKRT_MLRA_MAX_ADAPTIVE_GRID) ? MASKRT_MLRA_MAX_ADAPTIVE_GRID
                                                                   : static_cast<int32_t>(g);
}

template <typename RT>
MLRA_HD Roi prepare_roi(Params const& p, int64_t k)
{
    RT const* row = static_cast<RT const*>(p.rois) + k * 5;
    float const b = load(row, 0);
    float const x1 = load(row, 1);
    float const y1 = load(row, 2);
    float const x2 = load(row, 3);
    float const y2 = load(row, 4);

    Roi r;
    r.level = -1;
    r.batch = 0;
    r.x0 = r.y0 = r.bin_w = r.bin_h = 0.0f;
    r.grid_w = r.grid_h = 0;

    int32_t level = 0;
    if (p.num_levels > 1)
    {
        level = level_of_box(
            x1, y1, x2, y2, p.roi_dtype == MASKRT_MLRA_FLOAT16, p.canonical_scale, p.canonical_level, p.k_min,
            p.k_max);
    }
    // The batch index is truncated toward zero (as a cast to int64 does), so values in (-1, batch) are valid.
    bool const valid_batch = is_finite(b) && b > -1.0f && b < static_cast<float>(p.batch);
    bool const finite = is_finite(x1) && is_finite(y1) && is_finite(x2) && is_finite(y2);
    if (level < 0 || level >= p.num_levels || !valid_batch || !finite)
    {
        return r;
    }
    if (p.height[level] <= 0 || p.width[level] <= 0)
    {
        return r;  // an empty map pools to zeros
    }

    float const scale = p.scale[level];
    float const offset = p.aligned ? 0.5f : 0.0f;
    float const x0 = sub(mul(x1, scale), offset);
    float const y0 = sub(mul(y1, scale), offset);
    float roi_w = sub(sub(mul(x2, scale), offset), x0);
    float roi_h = sub(sub(mul(y2, scale), offset), y0);
    if (!p.aligned)
    {
        roi_w = roi_w < 1.0f ? 1.0f : roi_w;
        roi_h = roi_h < 1.0f ? 1.0f : roi_h;
    }
    r.level = level;
    r.batch = static_cast<int64_t>(b);
    r.x0 = x0;
    r.y0 = y0;
    r.bin_w = div(roi_w, static_cast<float>(p.out_w));
    r.bin_h = div(roi_h, static_cast<float>(p.out_h));
    if (p.sampling_ratio > 0)
    {
        r.grid_w = r.grid_h = p.sampling_ratio;
    }
    else
    {
        r.grid_w = adaptive_grid(r.bin_w);
        r.grid_h = adaptive_grid(r.bin_h);
    }
    return r;
}

// Bilinear taps along one axis for a sample at `pos` on an axis of `size` pixels.
struct Tap
{
    bool inside;  // false: the sample is more than one pixel outside the map and is 0
    int32_t lo;
    int32_t hi;
    float w_lo;
    float w_hi;
};

MLRA_HD Tap axis_tap(float pos, int64_t size)
{
    Tap t;
    t.inside = pos >= -1.0f && pos <= static_cast<float>(size);
    t.lo = t.hi = 0;
    t.w_lo = t.w_hi = 0.0f;
    if (!t.inside)
    {
        return t;
    }
    float q = pos <= 0.0f ? 0.0f : pos;
    int32_t lo = static_cast<int32_t>(q);  // q in [0, size]: truncation is floor
    int32_t const last = static_cast<int32_t>(size - 1);
    if (lo >= last)
    {
        lo = last;
        t.hi = last;
        q = static_cast<float>(lo);
    }
    else
    {
        t.hi = lo + 1;
    }
    t.lo = lo;
    float const frac = sub(q, static_cast<float>(lo));
    t.w_hi = frac;
    t.w_lo = sub(1.0f, frac);
    return t;
}

// Position of sample `i` of `grid` in bin `bin_index`: (start + bin_index * bin) + ((i + 0.5) * bin) / grid.
MLRA_HD float sample_position(float start, float bin, int64_t bin_index, int32_t i, int32_t grid)
{
    float const corner = add(start, mul(static_cast<float>(bin_index), bin));
    return add(corner, div(mul(add(static_cast<float>(i), 0.5f), bin), static_cast<float>(grid)));
}

// One output bin (py, px) of one channel. `plane` is the (H, W) map of the RoI's batch item and channel.
template <typename FT>
MLRA_HD float pool_bin(FT const* plane, int64_t height, int64_t width, Roi const& r, int64_t py, int64_t px, int32_t mode)
{
    if (r.level < 0 || r.grid_h <= 0 || r.grid_w <= 0)
    {
        return 0.0f;
    }
    float acc = 0.0f;
    bool first = true;
    for (int32_t iy = 0; iy < r.grid_h; ++iy)
    {
        Tap const ty = axis_tap(sample_position(r.y0, r.bin_h, py, iy, r.grid_h), height);
        for (int32_t ix = 0; ix < r.grid_w; ++ix)
        {
            Tap const tx = axis_tap(sample_position(r.x0, r.bin_w, px, ix, r.grid_w), width);
            float val = 0.0f;
            if (ty.inside && tx.inside)
            {
                int64_t const row_lo = static_cast<int64_t>(ty.lo) * width;
                int64_t const row_hi = static_cast<int64_t>(ty.hi) * width;
                val = mul(load(plane, row_lo + tx.lo), mul(ty.w_lo, tx.w_lo));
                val = add(val, mul(load(plane, row_lo + tx.hi), mul(ty.w_lo, tx.w_hi)));
                val = add(val, mul(load(plane, row_hi + tx.lo), mul(ty.w_hi, tx.w_lo)));
                val = add(val, mul(load(plane, row_hi + tx.hi), mul(ty.w_hi, tx.w_hi)));
            }
            if (first)
            {
                acc = val;
                first = false;
            }
            else if (mode == MASKRT_MLRA_MODE_AVG)
            {
                acc = add(acc, val);
            }
            else
            {
                acc = nan_max(acc, val);
            }
        }
    }
    if (mode == MASKRT_MLRA_MODE_AVG)
    {
        acc = div(acc, mul(static_cast<float>(r.grid_h), static_cast<float>(r.grid_w)));
    }
    return acc;
}

// Output element `index` of the flattened (K, C, PH, PW) output.
template <typename FT, typename RT>
MLRA_HD float compute_element(Params const& p, int64_t index)
{
    int64_t const px = index % p.out_w;
    int64_t const py = (index / p.out_w) % p.out_h;
    int64_t const c = (index / (p.out_w * p.out_h)) % p.channels;
    int64_t const k = index / (p.out_w * p.out_h * p.channels);
    Roi const r = prepare_roi<RT>(p, k);
    if (r.level < 0)
    {
        return 0.0f;
    }
    int64_t const height = p.height[r.level];
    int64_t const width = p.width[r.level];
    FT const* plane = static_cast<FT const*>(p.features[r.level]) + (r.batch * p.channels + c) * height * width;
    return pool_bin(plane, height, width, r, py, px, p.mode);
}

// ---------------------------------------------------------------------------------------------------------------
// Argument validation, shared by both launchers (host code only).

inline bool checked_mul(int64_t a, int64_t b, int64_t* out)
{
    const int64_t limit = int64_t(1) << 62;
    if (a < 0 || b < 0)
    {
        return false;
    }
    if (a != 0 && b > limit / a)
    {
        return false;
    }
    *out = a * b;
    return true;
}

inline bool numel(int64_t const* shape, int rank, int64_t* out)
{
    int64_t n = 1;
    for (int i = 0; i < rank; ++i)
    {
        if (!checked_mul(n, shape[i], &n))
        {
            return false;
        }
    }
    *out = n;
    return true;
}

inline int32_t validate(int32_t feature_dtype, int32_t roi_dtype, int32_t num_levels, void const* const* features,
    int64_t const* feature_shapes, float const* scales, void const* rois, int64_t const* roi_shape, void* output,
    int64_t const* output_shape, int32_t sampling_ratio, int32_t aligned, int32_t mode, float canonical_scale,
    int32_t canonical_level, Params* p)
{
    if (num_levels < 1 || num_levels > MASKRT_MLRA_MAX_LEVELS)
    {
        return MASKRT_MLRA_ERR_NUM_LEVELS;
    }
    if (!features || !feature_shapes || !scales || !roi_shape || !output_shape || !p)
    {
        return MASKRT_MLRA_ERR_NULL_POINTER;
    }
    bool const known = (feature_dtype == MASKRT_MLRA_FLOAT32 || feature_dtype == MASKRT_MLRA_FLOAT16)
        && (roi_dtype == MASKRT_MLRA_FLOAT32 || roi_dtype == MASKRT_MLRA_FLOAT16);
    if (!known || (roi_dtype == MASKRT_MLRA_FLOAT16 && feature_dtype != MASKRT_MLRA_FLOAT16))
    {
        return MASKRT_MLRA_ERR_DTYPE;
    }
    if (mode != MASKRT_MLRA_MODE_AVG && mode != MASKRT_MLRA_MODE_MAX)
    {
        return MASKRT_MLRA_ERR_ARGUMENT;
    }
    if (!(canonical_scale > 0.0f) || !is_finite(canonical_scale))
    {
        return MASKRT_MLRA_ERR_ARGUMENT;
    }
    int64_t const dim_limit = int64_t(1) << 30;
    int64_t const batch = feature_shapes[0];
    int64_t const channels = feature_shapes[1];
    for (int32_t l = 0; l < num_levels; ++l)
    {
        if (!(scales[l] > 0.0f) || !is_finite(scales[l]))
        {
            return MASKRT_MLRA_ERR_ARGUMENT;
        }
        int64_t const* s = feature_shapes + 4 * l;
        for (int i = 0; i < 4; ++i)
        {
            if (s[i] < 0 || s[i] > dim_limit)
            {
                return MASKRT_MLRA_ERR_SHAPE;
            }
        }
        if (s[0] != batch || s[1] != channels)
        {
            return MASKRT_MLRA_ERR_SHAPE;
        }
        int64_t n = 0;
        if (!numel(s, 4, &n))
        {
            return MASKRT_MLRA_ERR_SHAPE;
        }
        if (n > 0 && !features[l])
        {
            return MASKRT_MLRA_ERR_NULL_POINTER;
        }
    }
    int64_t const num_rois = roi_shape[0];
    if (num_rois < 0 || roi_shape[1] != 5)
    {
        return MASKRT_MLRA_ERR_SHAPE;
    }
    if (output_shape[0] != num_rois || output_shape[1] != channels)
    {
        return MASKRT_MLRA_ERR_SHAPE;
    }
    if (output_shape[2] < 1 || output_shape[3] < 1)
    {
        return MASKRT_MLRA_ERR_ARGUMENT;
    }
    if (output_shape[2] > dim_limit || output_shape[3] > dim_limit)
    {
        return MASKRT_MLRA_ERR_SHAPE;
    }
    int64_t out_numel = 0;
    int64_t roi_numel = 0;
    if (!numel(output_shape, 4, &out_numel) || !numel(roi_shape, 2, &roi_numel))
    {
        return MASKRT_MLRA_ERR_SHAPE;
    }
    if ((roi_numel > 0 && !rois) || (out_numel > 0 && !output))
    {
        return MASKRT_MLRA_ERR_NULL_POINTER;
    }

    p->num_levels = num_levels;
    for (int32_t l = 0; l < MASKRT_MLRA_MAX_LEVELS; ++l)
    {
        bool const used = l < num_levels;
        p->features[l] = used ? features[l] : nullptr;
        p->height[l] = used ? feature_shapes[4 * l + 2] : 0;
        p->width[l] = used ? feature_shapes[4 * l + 3] : 0;
        p->scale[l] = used ? scales[l] : 0.0f;
    }
    p->batch = batch;
    p->channels = channels;
    p->num_rois = num_rois;
    p->out_h = output_shape[2];
    p->out_w = output_shape[3];
    p->rois = rois;
    p->output = output;
    p->feature_dtype = feature_dtype;
    p->roi_dtype = roi_dtype;
    p->sampling_ratio = sampling_ratio;
    p->aligned = aligned ? 1 : 0;
    p->mode = mode;
    p->canonical_scale = canonical_scale;
    p->canonical_level = canonical_level;
    // As maskrt.ops.poolers.level_range: int() of -log2(scale) truncates toward zero.
    p->k_min = static_cast<int32_t>(-log2(static_cast<double>(scales[0])));
    p->k_max = static_cast<int32_t>(-log2(static_cast<double>(scales[num_levels - 1])));
    return MASKRT_MLRA_OK;
}

inline int64_t output_numel(Params const& p)
{
    return p.num_rois * p.channels * p.out_h * p.out_w;
}

} // namespace mlra
} // namespace maskrt

#endif // MASKRT_MLRA_MATH_H
