/*
 * maskrt fused multi-level RoI Align: the C ABI of the host (CPU) twin and the CUDA launcher.
 *
 * Both launchers compute, for every RoI, the FPN level of its box and then RoI Align on that level, exactly as
 * maskrt.ops.poolers.multilevel_roi_align does (see README.md next to CMakeLists.txt for the semantics).
 *
 * Tensors are dense and row-major (NCHW for feature maps):
 *   features[l]      (N, C, H_l, W_l)  of `feature_dtype`
 *   rois             (K, 5)            of `roi_dtype`: batch_index, x1, y1, x2, y2 in image pixels
 *   output           (K, C, PH, PW)    of `feature_dtype`
 * Shapes are passed as int64 arrays: feature_shapes holds num_levels * 4 values (level after level),
 * roi_shape 2 values and output_shape 4 values. Every output element is written (RoIs that cannot be pooled
 * give zeros), so the output needs no clearing beforehand.
 *
 * A launcher returns MASKRT_MLRA_OK (0) or one of the error codes below, and touches no memory when it returns
 * an error.
 */
#ifndef MASKRT_MLRA_H
#define MASKRT_MLRA_H

#include <stdint.h>

#if defined(_WIN32)
#define MASKRT_MLRA_API __declspec(dllexport)
#else
#define MASKRT_MLRA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this ABI; bumped on any change of a signature or of the meaning of an argument. */
#define MASKRT_MLRA_ABI_VERSION 1

/* Most feature maps one call takes. */
#define MASKRT_MLRA_MAX_LEVELS 8 /* mlra_common.cpp and maskrt/plugins/spec.py repeat it */

/* Adaptive sampling (sampling_ratio <= 0) takes ceil(roi_size / bins) samples per bin and axis, at most this
 * many: only RoIs larger than MASKRT_MLRA_MAX_ADAPTIVE_GRID * bins feature pixels are affected. */
#define MASKRT_MLRA_MAX_ADAPTIVE_GRID 512

/* Element types (feature_dtype, roi_dtype). */
#define MASKRT_MLRA_FLOAT32 0
#define MASKRT_MLRA_FLOAT16 1

/* Bin reductions (mode). */
#define MASKRT_MLRA_MODE_AVG 0
#define MASKRT_MLRA_MODE_MAX 1

/* Status codes. */
#define MASKRT_MLRA_OK 0
#define MASKRT_MLRA_ERR_NULL_POINTER 1   /* a required pointer is NULL (data of empty tensors may be NULL) */
#define MASKRT_MLRA_ERR_NUM_LEVELS 2     /* num_levels < 1 or > MASKRT_MLRA_MAX_LEVELS */
#define MASKRT_MLRA_ERR_SHAPE 3          /* shapes disagree, a dimension is negative or too large */
#define MASKRT_MLRA_ERR_DTYPE 4          /* unknown dtype, or fp16 rois with fp32 features */
#define MASKRT_MLRA_ERR_ARGUMENT 5       /* bad mode, scale, canonical scale, or output size < 1 */
#define MASKRT_MLRA_ERR_CUDA 6           /* the kernel launch failed (CUDA launcher only) */
#define MASKRT_MLRA_ERR_NO_CUDA 7        /* the library was built without CUDA (CUDA launcher only) */

/* CUDA stream, layout-compatible with cudaStream_t (a pointer to struct CUstream_st). */
struct CUstream_st;

MASKRT_MLRA_API int32_t maskrt_mlra_abi_version(void);

/* Static text for a status code. */
MASKRT_MLRA_API const char* maskrt_mlra_status_string(int32_t status);

/* 1 when the library holds the CUDA launcher, else 0 (maskrt_mlra_forward_cuda then returns ERR_NO_CUDA). */
MASKRT_MLRA_API int32_t maskrt_mlra_has_cuda(void);

/* Pool on the CPU; all pointers are host memory. */
MASKRT_MLRA_API int32_t maskrt_mlra_forward_host(
    int32_t feature_dtype, int32_t roi_dtype, int32_t num_levels, const void* const* features,
    const int64_t* feature_shapes, const float* scales, const void* rois, const int64_t* roi_shape, void* output,
    const int64_t* output_shape, int32_t sampling_ratio, int32_t aligned, int32_t mode, float canonical_scale,
    int32_t canonical_level);

/* Enqueue the CUDA kernel on `stream`; tensor pointers are device memory, the pointer and shape arrays host
 * memory (read before the call returns). Asynchronous: kernel faults surface at the next synchronisation. */
MASKRT_MLRA_API int32_t maskrt_mlra_forward_cuda(
    int32_t feature_dtype, int32_t roi_dtype, int32_t num_levels, const void* const* features,
    const int64_t* feature_shapes, const float* scales, const void* rois, const int64_t* roi_shape, void* output,
    const int64_t* output_shape, int32_t sampling_ratio, int32_t aligned, int32_t mode, float canonical_scale,
    int32_t canonical_level, struct CUstream_st* stream);

#ifdef __cplusplus
}
#endif

#endif /* MASKRT_MLRA_H */
