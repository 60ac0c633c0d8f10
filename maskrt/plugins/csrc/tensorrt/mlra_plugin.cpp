/*
 * TensorRT plugin (IPluginV3 with the V3One capability interfaces) for maskrt's fused multi-level RoI Align.
 *
 * Name "MaskrtMultilevelRoIAlign", version "1", namespace "maskrt".
 * Inputs:  0: rois (K, 5) [batch_index, x1, y1, x2, y2], fp32 (also when the maps are fp16)
 *          1..L: feature maps (N, C, H_l, W_l), finest first, all fp32 or all fp16, linear (NCHW)
 * Output:  (K, C, output_height, output_width), the maps' type
 * Fields:  output_height, output_width, sampling_ratio, aligned, canonical_scale, canonical_level (int32),
 *          mode ("avg" | "max", char; int32 0 | 1 accepted too), scales (float32[L]).
 *
 * Loading: one way only, IPluginRegistry::loadLibrary (trt.get_plugin_registry().load_library, trtexec
 * --dynamicPlugins): the library exports getCreators() and setLoggerFinder(). It does not register anything when
 * it is merely loaded: NVIDIA documents static registration and loadLibrary as alternatives, and loadLibrary
 * refuses a library whose creators are already registered.
 */
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "maskrt_mlra.h"

#define MASKRT_TRT_EXPORT extern "C" __attribute__((visibility("default")))

namespace maskrt
{
namespace trt
{
namespace
{

using namespace nvinfer1;

char const* const kName = "MaskrtMultilevelRoIAlign";
char const* const kVersion = "1";
char const* const kNamespace = "maskrt";

// ---------------------------------------------------------------------------------------------------------------
// Logging through the finder TensorRT hands to setLoggerFinder (silent until then).

std::mutex gLoggerMutex;
ILoggerFinder* gLoggerFinder = nullptr;

void log(ILogger::Severity severity, std::string const& message) noexcept
{
    try
    {
        ILogger* logger = nullptr;
        {
            std::lock_guard<std::mutex> lock(gLoggerMutex);
            if (gLoggerFinder)
            {
                logger = gLoggerFinder->findLogger();
            }
        }
        if (logger)
        {
            logger->log(severity, (std::string(kNamespace) + "::" + kName + ": " + message).c_str());
        }
    }
    catch (...)
    {
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Fields.

struct Config
{
    int32_t outputHeight{7};
    int32_t outputWidth{7};
    int32_t samplingRatio{2};
    int32_t aligned{0};
    int32_t mode{MASKRT_MLRA_MODE_AVG};
    int32_t canonicalScale{224};
    int32_t canonicalLevel{4};
    std::vector<float> scales;
};

bool readNumber(PluginField const& f, double* out)
{
    if (!f.data || f.length < 1)
    {
        return false;
    }
    switch (f.type)
    {
    case PluginFieldType::kINT32: *out = *static_cast<int32_t const*>(f.data); return true;
    case PluginFieldType::kINT64: *out = static_cast<double>(*static_cast<int64_t const*>(f.data)); return true;
    case PluginFieldType::kINT16: *out = *static_cast<int16_t const*>(f.data); return true;
    case PluginFieldType::kINT8: *out = *static_cast<int8_t const*>(f.data); return true;
    case PluginFieldType::kFLOAT32: *out = *static_cast<float const*>(f.data); return true;
    case PluginFieldType::kFLOAT64: *out = *static_cast<double const*>(f.data); return true;
    default: return false;
    }
}

bool readInt(PluginField const& f, int32_t* out)
{
    double v = 0;
    if (!readNumber(f, &v) || !(v >= -2147483648.0 && v <= 2147483647.0) || v != std::floor(v))
    {
        return false;
    }
    *out = static_cast<int32_t>(v);
    return true;
}

bool readFloats(PluginField const& f, std::vector<float>* out)
{
    if (!f.data || f.length < 1)
    {
        return false;
    }
    out->clear();
    for (int32_t i = 0; i < f.length; ++i)
    {
        if (f.type == PluginFieldType::kFLOAT32)
        {
            out->push_back(static_cast<float const*>(f.data)[i]);
        }
        else if (f.type == PluginFieldType::kFLOAT64)
        {
            out->push_back(static_cast<float>(static_cast<double const*>(f.data)[i]));
        }
        else
        {
            return false;
        }
    }
    return true;
}

bool readMode(PluginField const& f, int32_t* out)
{
    if (f.type == PluginFieldType::kCHAR)
    {
        if (!f.data || f.length < 0)
        {
            return false;
        }
        char const* text = static_cast<char const*>(f.data);
        std::string const s(text, strnlen(text, static_cast<size_t>(f.length)));
        if (s == "avg" || s == "max")
        {
            *out = s == "avg" ? MASKRT_MLRA_MODE_AVG : MASKRT_MLRA_MODE_MAX;
            return true;
        }
        return false;
    }
    int32_t v = -1;
    if (readInt(f, &v) && (v == MASKRT_MLRA_MODE_AVG || v == MASKRT_MLRA_MODE_MAX))
    {
        *out = v;
        return true;
    }
    return false;
}

// When `name` is one of the integer fields, read `f` into it (`*ok`: whether it parsed) and return true.
bool readIntField(std::string const& name, PluginField const& f, Config* config, bool* ok)
{
    static std::pair<char const*, int32_t Config::*> const kIntFields[] = {
        {"output_height", &Config::outputHeight}, {"output_width", &Config::outputWidth},
        {"sampling_ratio", &Config::samplingRatio}, {"aligned", &Config::aligned},
        {"canonical_scale", &Config::canonicalScale}, {"canonical_level", &Config::canonicalLevel},
    };
    for (auto const& field : kIntFields)
    {
        if (name == field.first)
        {
            *ok = readInt(f, &(config->*field.second));
            return true;
        }
    }
    return false;
}

// Parse a field collection into `config`; false (with a log line) on an unknown, malformed or invalid field.
bool parseFields(PluginFieldCollection const* fc, Config* config)
{
    if (!fc || (fc->nbFields > 0 && !fc->fields))
    {
        log(ILogger::Severity::kERROR, "null field collection");
        return false;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::string const name = f.name ? f.name : "";
        bool ok = true;
        if (!readIntField(name, f, config, &ok))
        {
            if (name == "mode")
            {
                ok = readMode(f, &config->mode);
            }
            else if (name == "scales")
            {
                ok = readFloats(f, &config->scales);
            }
            else if (name == "plugin_version" || name == "plugin_namespace")
            {
                continue;  // ONNX node attributes that select the plugin, not fields of it
            }
            else
            {
                log(ILogger::Severity::kWARNING, "ignoring unknown field '" + name + "'");
                continue;
            }
        }
        if (!ok)
        {
            log(ILogger::Severity::kERROR, "field '" + name + "' has an unsupported type or value");
            return false;
        }
    }
    if (config->scales.empty() || config->scales.size() > MASKRT_MLRA_MAX_LEVELS)
    {
        log(ILogger::Severity::kERROR,
            "field 'scales' must hold 1 to " + std::to_string(MASKRT_MLRA_MAX_LEVELS) + " values (one per feature map)");
        return false;
    }
    for (float s : config->scales)
    {
        if (!(s > 0.0f) || !std::isfinite(s))
        {
            log(ILogger::Severity::kERROR, "field 'scales' must be positive and finite");
            return false;
        }
    }
    if (config->outputHeight < 1 || config->outputWidth < 1 || config->canonicalScale < 1)
    {
        log(ILogger::Severity::kERROR, "output_height, output_width and canonical_scale must be >= 1");
        return false;
    }
    config->aligned = config->aligned ? 1 : 0;
    return true;
}

int32_t dtypeCode(DataType t)
{
    if (t == DataType::kFLOAT)
    {
        return MASKRT_MLRA_FLOAT32;
    }
    if (t == DataType::kHALF)
    {
        return MASKRT_MLRA_FLOAT16;
    }
    return -1;
}

// ---------------------------------------------------------------------------------------------------------------
// The plugin.

class MultilevelRoIAlignPlugin final : public IPluginV3,
                                       public IPluginV3OneCore,
                                       public IPluginV3OneBuild,
                                       public IPluginV3OneRuntime
{
public:
    explicit MultilevelRoIAlignPlugin(Config config)
        : mConfig(std::move(config))
        , mModeText(mConfig.mode == MASKRT_MLRA_MODE_AVG ? "avg" : "max")
    {
    }

    ~MultilevelRoIAlignPlugin() override = default;

    // IPluginV3
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    IPluginV3* clone() noexcept override
    {
        try
        {
            return new MultilevelRoIAlignPlugin(mConfig);
        }
        catch (...)
        {
            return nullptr;
        }
    }

    // IPluginV3OneCore
    AsciiChar const* getPluginName() const noexcept override
    {
        return kName;
    }

    AsciiChar const* getPluginVersion() const noexcept override
    {
        return kVersion;
    }

    AsciiChar const* getPluginNamespace() const noexcept override
    {
        return kNamespace;
    }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override
    {
        if (!in || !out || nbInputs != numInputs() || nbOutputs != 1)
        {
            log(ILogger::Severity::kERROR,
                "expects " + std::to_string(numInputs()) + " inputs (rois and one map per scale) and 1 output, got "
                    + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
            return -1;
        }
        return 0;
    }

    int32_t getOutputDataTypes(
        DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept override
    {
        if (!outputTypes || !inputTypes || nbOutputs != 1 || nbInputs != numInputs())
        {
            return -1;
        }
        outputTypes[0] = inputTypes[1];
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
        int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept override
    {
        if (!inputs || !outputs || nbInputs != numInputs() || nbOutputs != 1)
        {
            log(ILogger::Severity::kERROR, "wrong number of inputs or outputs");
            return -1;
        }
        if (inputs[0].nbDims != 2)
        {
            log(ILogger::Severity::kERROR, "rois must be a (K, 5) tensor");
            return -1;
        }
        for (int32_t i = 1; i < nbInputs; ++i)
        {
            if (inputs[i].nbDims != 4)
            {
                log(ILogger::Severity::kERROR, "feature maps must be (N, C, H, W) tensors");
                return -1;
            }
        }
        outputs[0].nbDims = 4;
        outputs[0].d[0] = inputs[0].d[0];  // K: dynamic
        outputs[0].d[1] = inputs[1].d[1];  // C
        outputs[0].d[2] = exprBuilder.constant(mConfig.outputHeight);
        outputs[0].d[3] = exprBuilder.constant(mConfig.outputWidth);
        return 0;
    }

    bool supportsFormatCombination(
        int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override
    {
        if (!inOut || nbInputs != numInputs() || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs)
        {
            return false;
        }
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        if (pos == 0)
        {
            // RoI coordinates stay fp32 whatever the network's precision: fp16 has 0.5-1 px steps past 512 px,
            // and a weakly typed fp16 build would otherwise be free to pick half-precision boxes.
            return desc.type == DataType::kFLOAT;
        }
        if (pos == 1)
        {
            return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
        }
        return desc.type == inOut[1].desc.type;  // the other maps and the output share the first map's type
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(
        PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept override
    {
        if (!in || !out || nbInputs != numInputs() || nbOutputs != 1)
        {
            return -1;
        }
        return 0;
    }

    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc, void const* const* inputs,
        void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept override
    {
        if (!inputDesc || !outputDesc || !inputs || !outputs)
        {
            return -1;
        }
        int32_t const levels = numInputs() - 1;
        int64_t featureShapes[4 * MASKRT_MLRA_MAX_LEVELS];
        void const* features[MASKRT_MLRA_MAX_LEVELS];
        for (int32_t l = 0; l < levels; ++l)
        {
            Dims const& d = inputDesc[1 + l].dims;
            if (d.nbDims != 4)
            {
                return -1;
            }
            for (int32_t i = 0; i < 4; ++i)
            {
                featureShapes[4 * l + i] = d.d[i];
            }
            features[l] = inputs[1 + l];
        }
        Dims const& r = inputDesc[0].dims;
        Dims const& o = outputDesc[0].dims;
        if (r.nbDims != 2 || o.nbDims != 4)
        {
            return -1;
        }
        int64_t const roiShape[2] = {r.d[0], r.d[1]};
        int64_t const outputShape[4] = {o.d[0], o.d[1], o.d[2], o.d[3]};
        int32_t const status = maskrt_mlra_forward_cuda(dtypeCode(inputDesc[1].type), dtypeCode(inputDesc[0].type),
            levels, features, featureShapes, mConfig.scales.data(), inputs[0], roiShape, outputs[0], outputShape,
            mConfig.samplingRatio, mConfig.aligned, mConfig.mode, static_cast<float>(mConfig.canonicalScale),
            mConfig.canonicalLevel, stream);
        if (status != MASKRT_MLRA_OK)
        {
            log(ILogger::Severity::kERROR, std::string("enqueue failed: ") + maskrt_mlra_status_string(status));
            return -1;
        }
        return 0;
    }

    IPluginV3* attachToContext(IPluginResourceContext* /*context*/) noexcept override
    {
        return clone();
    }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        mFields.clear();
        mFields.emplace_back("output_height", &mConfig.outputHeight, PluginFieldType::kINT32, 1);
        mFields.emplace_back("output_width", &mConfig.outputWidth, PluginFieldType::kINT32, 1);
        mFields.emplace_back("sampling_ratio", &mConfig.samplingRatio, PluginFieldType::kINT32, 1);
        mFields.emplace_back("aligned", &mConfig.aligned, PluginFieldType::kINT32, 1);
        mFields.emplace_back(
            "mode", mModeText.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(mModeText.size()));
        mFields.emplace_back("canonical_scale", &mConfig.canonicalScale, PluginFieldType::kINT32, 1);
        mFields.emplace_back("canonical_level", &mConfig.canonicalLevel, PluginFieldType::kINT32, 1);
        mFields.emplace_back(
            "scales", mConfig.scales.data(), PluginFieldType::kFLOAT32, static_cast<int32_t>(mConfig.scales.size()));
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
        return &mCollection;
    }

private:
    int32_t numInputs() const noexcept
    {
        return 1 + static_cast<int32_t>(mConfig.scales.size());
    }

    Config mConfig;
    std::string mModeText;
    std::vector<PluginField> mFields;
    PluginFieldCollection mCollection{};
};

// ---------------------------------------------------------------------------------------------------------------
// The creator.

class MultilevelRoIAlignCreator final : public IPluginCreatorV3One
{
public:
    MultilevelRoIAlignCreator()
    {
        mFields.emplace_back("output_height", nullptr, PluginFieldType::kINT32, 1);
        mFields.emplace_back("output_width", nullptr, PluginFieldType::kINT32, 1);
        mFields.emplace_back("sampling_ratio", nullptr, PluginFieldType::kINT32, 1);
        mFields.emplace_back("aligned", nullptr, PluginFieldType::kINT32, 1);
        mFields.emplace_back("mode", nullptr, PluginFieldType::kCHAR, 3);
        mFields.emplace_back("canonical_scale", nullptr, PluginFieldType::kINT32, 1);
        mFields.emplace_back("canonical_level", nullptr, PluginFieldType::kINT32, 1);
        mFields.emplace_back("scales", nullptr, PluginFieldType::kFLOAT32, 0);
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
    }

    IPluginV3* createPlugin(AsciiChar const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
        override
    {
        try
        {
            Config config;
            if (!parseFields(fc, &config))
            {
                return nullptr;
            }
            return new MultilevelRoIAlignPlugin(std::move(config));
        }
        catch (...)
        {
            log(ILogger::Severity::kERROR, "createPlugin failed");
            return nullptr;
        }
    }

    PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mCollection;
    }

    AsciiChar const* getPluginName() const noexcept override
    {
        return kName;
    }

    AsciiChar const* getPluginVersion() const noexcept override
    {
        return kVersion;
    }

    AsciiChar const* getPluginNamespace() const noexcept override
    {
        return kNamespace;
    }

private:
    std::vector<PluginField> mFields;
    PluginFieldCollection mCollection{};
};

MultilevelRoIAlignCreator& creator()
{
    static MultilevelRoIAlignCreator instance;
    return instance;
}

} // namespace
} // namespace trt
} // namespace maskrt

// ---------------------------------------------------------------------------------------------------------------
// Entry points of a TensorRT plugin library (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins).

MASKRT_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&maskrt::trt::creator()};
    nbCreators = 1;
    return creators;
}

MASKRT_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(maskrt::trt::gLoggerMutex);
    maskrt::trt::gLoggerFinder = finder;
}
