// Exercises the maskrt TensorRT plugin through its entry points without a TensorRT library: only the headers
// are needed. getPluginRegistry() is stubbed (no registry, so the static registration does nothing) and the CUDA
// launcher is the no-CUDA build, so enqueue must fail cleanly. Prints "OK" and exits 0 when every check holds.
#include <NvInferRuntime.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace nvinfer1;

extern "C" IPluginRegistry* getPluginRegistry() noexcept
{
    return nullptr;
}

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(ILoggerFinder* finder);

namespace
{

struct Logger : ILogger
{
    int messages = 0;
    void log(Severity, AsciiChar const* msg) noexcept override
    {
        ++messages;
        std::printf("log: %s\n", msg);
    }
};

struct Finder : ILoggerFinder
{
    Logger logger;
    ILogger* findLogger() override
    {
        return &logger;
    }
};

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            std::fprintf(stderr, "FAIL line %d: %s\n", __LINE__, #cond);                                             \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (0)

DynamicPluginTensorDesc desc(DataType type, int32_t rank, TensorFormat format = TensorFormat::kLINEAR)
{
    DynamicPluginTensorDesc d{};
    d.desc.type = type;
    d.desc.format = format;
    d.desc.dims.nbDims = rank;
    for (int32_t i = 0; i < rank; ++i)
    {
        d.desc.dims.d[i] = 4;
    }
    return d;
}

bool allSupported(IPluginV3OneBuild* build, std::vector<DynamicPluginTensorDesc> const& io)
{
    for (int32_t pos = 0; pos < static_cast<int32_t>(io.size()); ++pos)
    {
        if (!build->supportsFormatCombination(pos, io.data(), static_cast<int32_t>(io.size()) - 1, 1))
        {
            return false;
        }
    }
    return true;
}

} // namespace

int main()
{
    Finder finder;
    setLoggerFinder(&finder);
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = getCreators(count);
    CHECK(count == 1 && creators && creators[0]);
    CHECK(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    CHECK(std::strcmp(creator->getPluginName(), "MaskrtMultilevelRoIAlign") == 0);
    CHECK(std::strcmp(creator->getPluginVersion(), "1") == 0);
    CHECK(std::strcmp(creator->getPluginNamespace(), "maskrt") == 0);
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names && names->nbFields == 8);

    // Fields as TensorRT's ONNX parser makes them: INT -> kINT32, STRING -> kCHAR (no NUL), FLOATS -> kFLOAT32.
    int32_t oh = 14, ow = 12, sr = 0, aligned = 1, cs = 224, cl = 4;
    char const mode[3] = {'m', 'a', 'x'};
    float const scales[4] = {0.25f, 0.125f, 0.0625f, 0.03125f};
    std::vector<PluginField> fields = {
        {"output_height", &oh, PluginFieldType::kINT32, 1},
        {"output_width", &ow, PluginFieldType::kINT32, 1},
        {"sampling_ratio", &sr, PluginFieldType::kINT32, 1},
        {"aligned", &aligned, PluginFieldType::kINT32, 1},
        {"mode", mode, PluginFieldType::kCHAR, 3},
        {"canonical_scale", &cs, PluginFieldType::kINT32, 1},
        {"canonical_level", &cl, PluginFieldType::kINT32, 1},
        {"scales", scales, PluginFieldType::kFLOAT32, 4},
    };
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    IPluginV3* plugin = creator->createPlugin("box_pool", &fc, TensorRTPhase::kBUILD);
    CHECK(plugin);
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    CHECK(core && build && runtime);
    CHECK(std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0);
    CHECK(std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0);
    CHECK(std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0);
    CHECK(std::strcmp(core->getPluginName(), "MaskrtMultilevelRoIAlign") == 0);
    CHECK(std::strcmp(core->getPluginNamespace(), "maskrt") == 0);
    CHECK(build->getNbOutputs() == 1);

    DataType inTypes[5] = {DataType::kFLOAT, DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF};
    DataType outType = DataType::kFLOAT;
    CHECK(build->getOutputDataTypes(&outType, 1, inTypes, 5) == 0 && outType == DataType::kHALF);
    CHECK(build->getOutputDataTypes(&outType, 1, inTypes, 4) != 0);

    auto const F = DataType::kFLOAT;
    auto const H = DataType::kHALF;
    std::vector<DynamicPluginTensorDesc> io
        = {desc(F, 2), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4)};
    CHECK(allSupported(build, io));
    io = {desc(F, 2), desc(H, 4), desc(H, 4), desc(H, 4), desc(H, 4), desc(H, 4)};
    CHECK(allSupported(build, io));
    io = {desc(H, 2), desc(H, 4), desc(H, 4), desc(H, 4), desc(H, 4), desc(H, 4)};
    CHECK(!build->supportsFormatCombination(0, io.data(), 5, 1));  // rois are fp32 whatever the maps' type
    io = {desc(H, 2), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4)};
    CHECK(!build->supportsFormatCombination(0, io.data(), 5, 1));
    io = {desc(F, 2), desc(F, 4), desc(H, 4), desc(F, 4), desc(F, 4), desc(F, 4)};
    CHECK(!build->supportsFormatCombination(2, io.data(), 5, 1));  // mixed map types
    io = {desc(F, 2), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4), desc(H, 4)};
    CHECK(!build->supportsFormatCombination(5, io.data(), 5, 1));  // output type follows the maps
    io = {desc(DataType::kINT32, 2), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4)};
    CHECK(!build->supportsFormatCombination(0, io.data(), 5, 1));
    io = {desc(F, 2), desc(F, 4, TensorFormat::kCHW32), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4)};
    CHECK(!build->supportsFormatCombination(1, io.data(), 5, 1));
    CHECK(!build->supportsFormatCombination(0, io.data(), 4, 1));  // wrong input count

    io = {desc(F, 2), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4), desc(F, 4)};
    CHECK(build->configurePlugin(io.data(), 5, io.data() + 5, 1) == 0);
    CHECK(build->configurePlugin(io.data(), 4, io.data() + 4, 1) != 0);
    CHECK(build->getWorkspaceSize(io.data(), 5, io.data() + 5, 1) == 0);

    // Serialization round trip: the fields written are read back into an equal plugin.
    PluginFieldCollection const* saved = runtime->getFieldsToSerialize();
    CHECK(saved && saved->nbFields == 8);
    IPluginV3* restored = creator->createPlugin("box_pool", saved, TensorRTPhase::kRUNTIME);
    CHECK(restored);
    auto* restoredRuntime
        = static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    std::vector<std::string> first;
    for (int32_t i = 0; i < saved->nbFields; ++i)
    {
        PluginField const& f = saved->fields[i];
        size_t const bytes = f.type == PluginFieldType::kCHAR ? 1 : 4;
        first.emplace_back(std::string(f.name) + ":" + std::to_string(static_cast<int>(f.type)) + ":"
            + std::string(static_cast<char const*>(f.data), bytes * static_cast<size_t>(f.length)));
    }
    PluginFieldCollection const* again = restoredRuntime->getFieldsToSerialize();
    CHECK(again->nbFields == saved->nbFields);
    for (int32_t i = 0; i < again->nbFields; ++i)
    {
        PluginField const& f = again->fields[i];
        size_t const bytes = f.type == PluginFieldType::kCHAR ? 1 : 4;
        CHECK(first[i]
            == std::string(f.name) + ":" + std::to_string(static_cast<int>(f.type)) + ":"
                + std::string(static_cast<char const*>(f.data), bytes * static_cast<size_t>(f.length)));
    }
    CHECK(std::string(static_cast<char const*>(again->fields[4].data), again->fields[4].length) == "max");

    IPluginV3* cloned = plugin->clone();
    IPluginV3* attached = runtime->attachToContext(nullptr);
    CHECK(cloned && attached);

    // enqueue reaches the launcher, which in this build has no CUDA: an error status, not a crash.
    PluginTensorDesc descs[6];
    for (int32_t i = 0; i < 6; ++i)
    {
        descs[i] = io[i].desc;
    }
    descs[0].dims.nbDims = 2;
    descs[0].dims.d[0] = 3;
    descs[0].dims.d[1] = 5;
    descs[5].dims.d[0] = 3;
    descs[5].dims.d[2] = 14;
    descs[5].dims.d[3] = 12;
    float dummy[1] = {0};
    void const* inputs[5] = {dummy, dummy, dummy, dummy, dummy};
    void* outputs[1] = {dummy};
    CHECK(runtime->onShapeChange(descs, 5, descs + 5, 1) == 0);
    CHECK(runtime->enqueue(descs, descs + 5, inputs, outputs, nullptr, nullptr) != 0);

    // Invalid fields: no plugin.
    int32_t zero = 0;
    char const sum[3] = {'s', 'u', 'm'};
    int32_t modeMax = 1;
    std::vector<PluginField> bad = fields;
    bad[7].length = 0;
    PluginFieldCollection badFc{static_cast<int32_t>(bad.size()), bad.data()};
    CHECK(creator->createPlugin("x", &badFc, TensorRTPhase::kBUILD) == nullptr);
    bad = fields;
    bad[4] = PluginField{"mode", sum, PluginFieldType::kCHAR, 3};
    badFc.fields = bad.data();
    CHECK(creator->createPlugin("x", &badFc, TensorRTPhase::kBUILD) == nullptr);
    bad = fields;
    bad[0] = PluginField{"output_height", &zero, PluginFieldType::kINT32, 1};
    badFc.fields = bad.data();
    CHECK(creator->createPlugin("x", &badFc, TensorRTPhase::kBUILD) == nullptr);
    bad = fields;
    bad[4] = PluginField{"mode", &modeMax, PluginFieldType::kINT32, 1};  // mode as an int is accepted
    badFc.fields = bad.data();
    IPluginV3* intMode = creator->createPlugin("x", &badFc, TensorRTPhase::kBUILD);
    CHECK(intMode);
    CHECK(creator->createPlugin("x", nullptr, TensorRTPhase::kBUILD) == nullptr);
    CHECK(finder.logger.messages > 0);

    delete plugin;
    delete restored;
    delete cloned;
    delete attached;
    delete intMode;
    std::printf("OK\n");
    return 0;
}
