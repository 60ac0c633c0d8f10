// CUDA entry points of a host-only build: present so that every build exports the same symbols.
#include "maskrt_mlra.h"

extern "C" MASKRT_MLRA_API int32_t maskrt_mlra_has_cuda(void)
{
    return 0;
}

extern "C" MASKRT_MLRA_API int32_t maskrt_mlra_forward_cuda(int32_t, int32_t, int32_t, const void* const*,
    const int64_t*, const float*, const void*, const int64_t*, void*, const int64_t*, int32_t, int32_t, int32_t,
    float, int32_t, struct CUstream_st*)
{
    return MASKRT_MLRA_ERR_NO_CUDA;
}
