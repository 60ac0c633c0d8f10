// Status strings and version of the maskrt multi-level RoI Align C ABI (host code, part of every build).
#include "maskrt_mlra.h"

extern "C" MASKRT_MLRA_API int32_t maskrt_mlra_abi_version(void)
{
    return MASKRT_MLRA_ABI_VERSION;
}

extern "C" MASKRT_MLRA_API const char* maskrt_mlra_status_string(int32_t status)
{
    switch (status)
    {
    case MASKRT_MLRA_OK: return "ok";
    case MASKRT_MLRA_ERR_NULL_POINTER: return "a required pointer is null";
    case MASKRT_MLRA_ERR_NUM_LEVELS: return "num_levels must be between 1 and 8";
    case MASKRT_MLRA_ERR_SHAPE: return "tensor shapes disagree or are out of range";
    case MASKRT_MLRA_ERR_DTYPE: return "unsupported dtype combination";
    case MASKRT_MLRA_ERR_ARGUMENT: return "invalid argument (mode, scale, canonical scale or output size)";
    case MASKRT_MLRA_ERR_CUDA: return "CUDA kernel launch failed";
    case MASKRT_MLRA_ERR_NO_CUDA: return "library built without CUDA";
    default: return "unknown status";
    }
}
