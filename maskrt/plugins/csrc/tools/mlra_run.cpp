// Command-line driver for the host twin: reads the tensors of one call from raw files, runs
// maskrt_mlra_forward_host and writes the output. Every tensor lives in a heap block of exactly its size, so a
// build with AddressSanitizer (MASKRT_HOST_ASAN=ON) reports any read or write outside them.
//
// Usage: maskrt_mlra_run SPEC OUTPUT
// SPEC is a text file of whitespace-separated tokens:
//   feature_dtype roi_dtype num_levels sampling_ratio aligned mode canonical_scale canonical_level
//   then per level: PATH N C H W SCALE
//   then: PATH K COLS (the rois)
//   then: K C PH PW (the output shape)
// dtypes are 0 (float32) or 1 (float16); OUTPUT receives the raw output. Exit status: the launcher's status,
// or 100 + n for a driver error.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "maskrt_mlra.h"

namespace
{

void* read_exact(std::string const& path, size_t bytes)
{
    void* block = std::malloc(bytes ? bytes : 1);
    if (!block)
    {
        return nullptr;
    }
    if (bytes == 0)
    {
        return block;
    }
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f)
    {
        std::free(block);
        return nullptr;
    }
    size_t const got = std::fread(block, 1, bytes, f);
    std::fclose(f);
    if (got != bytes)
    {
        std::free(block);
        return nullptr;
    }
    return block;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 3)
    {
        std::fprintf(stderr, "usage: %s SPEC OUTPUT\n", argv[0]);
        return 101;
    }
    std::ifstream spec(argv[1]);
    int32_t feature_dtype = 0, roi_dtype = 0, num_levels = 0, sampling_ratio = 0, aligned = 0, mode = 0;
    int32_t canonical_level = 0;
    float canonical_scale = 0.0f;
    if (!(spec >> feature_dtype >> roi_dtype >> num_levels >> sampling_ratio >> aligned >> mode >> canonical_scale
            >> canonical_level)
        || num_levels < 0 || num_levels > 64)
    {
        std::fprintf(stderr, "bad spec header\n");
        return 102;
    }
    size_t const fsize = feature_dtype == 1 ? 2 : 4;
    size_t const rsize = roi_dtype == 1 ? 2 : 4;
    std::vector<void*> features(static_cast<size_t>(num_levels), nullptr);
    std::vector<int64_t> shapes(4 * static_cast<size_t>(num_levels), 0);
    std::vector<float> scales(static_cast<size_t>(num_levels), 0.0f);
    for (int32_t l = 0; l < num_levels; ++l)
    {
        std::string path;
        if (!(spec >> path >> shapes[4 * l] >> shapes[4 * l + 1] >> shapes[4 * l + 2] >> shapes[4 * l + 3] >> scales[l]))
        {
            std::fprintf(stderr, "bad level %d\n", l);
            return 103;
        }
        size_t n = 1;
        for (int i = 0; i < 4; ++i)
        {
            n *= static_cast<size_t>(shapes[4 * l + i] < 0 ? 0 : shapes[4 * l + i]);
        }
        features[l] = read_exact(path, n * fsize);
        if (!features[l])
        {
            std::fprintf(stderr, "cannot read %s\n", path.c_str());
            return 104;
        }
    }
    std::string roi_path;
    int64_t roi_shape[2] = {0, 0};
    int64_t out_shape[4] = {0, 0, 0, 0};
    if (!(spec >> roi_path >> roi_shape[0] >> roi_shape[1] >> out_shape[0] >> out_shape[1] >> out_shape[2]
            >> out_shape[3]))
    {
        std::fprintf(stderr, "bad rois/output spec\n");
        return 105;
    }
    size_t const roi_count = static_cast<size_t>(roi_shape[0] < 0 ? 0 : roi_shape[0]);
    size_t const roi_cols = static_cast<size_t>(roi_shape[1] < 0 ? 0 : roi_shape[1]);
    void* rois = read_exact(roi_path, roi_count * roi_cols * rsize);
    size_t out_n = 1;
    for (int i = 0; i < 4; ++i)
    {
        out_n *= static_cast<size_t>(out_shape[i] < 0 ? 0 : out_shape[i]);
    }
    void* output = std::malloc(out_n * fsize ? out_n * fsize : 1);
    if (!rois || !output)
    {
        std::fprintf(stderr, "cannot read rois or allocate the output\n");
        return 106;
    }
    int32_t const status = maskrt_mlra_forward_host(feature_dtype, roi_dtype, num_levels, features.data(),
        shapes.data(), scales.data(), rois, roi_shape, output, out_shape, sampling_ratio, aligned, mode,
        canonical_scale, canonical_level);
    if (status == MASKRT_MLRA_OK)
    {
        std::FILE* f = std::fopen(argv[2], "wb");
        if (!f || std::fwrite(output, 1, out_n * fsize, f) != out_n * fsize)
        {
            std::fprintf(stderr, "cannot write %s\n", argv[2]);
            return 107;
        }
        std::fclose(f);
    }
    std::printf("%s\n", maskrt_mlra_status_string(status));
    for (void* p : features)
    {
        std::free(p);
    }
    std::free(rois);
    std::free(output);
    return status;
}
