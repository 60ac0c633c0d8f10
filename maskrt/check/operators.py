"""Which ONNX operators TensorRT's ONNX parser imports, with which tensor types.

Facts from onnx-tensorrt ``docs/operators.md`` at the commits that NVIDIA/TensorRT pins as ``parsers/onnx`` for
v10.16 (6bde6596) and v11.1 (7c51a63a); the two tables agree except that 11.1 adds ``Swish``. Type names are
those of the table (FP32 ... BOOL). Per-operator restrictions are encoded as rules in
:mod:`maskrt.check.rules`, each citing its source.
"""

from __future__ import annotations

SOURCE = "onnx-tensorrt docs/operators.md (TensorRT 10.16: 6bde6596; 11.1: 7c51a63a)"

#: Opsets the parser supports (inclusive), both versions (operators.md, first paragraph).
OPSET_RANGE = (9, 24)

_F = "FP32 FP16 BF16"
_FI = "FP32 FP16 BF16 INT32 INT64"
_FIB = "FP32 FP16 BF16 INT32 INT64 BOOL"

#: Supported operators -> the tensor types their row lists.
SUPPORTED: dict[str, tuple[str, ...]] = {name: tuple(types.split()) for name, types in {
    "Abs": _FI, "Acos": _F, "Acosh": _F, "Add": _FI, "And": "BOOL", "ArgMax": _FI, "ArgMin": _FI, "Asin": _F,
    "Asinh": _F, "Atan": _F, "Atanh": _F, "Attention": "FP32 FP16 BF16 INT8 FP8", "AveragePool": _F,
    "BatchNormalization": _F, "BlackmanWindow": "FP32 FP16", "Cast": _FI + " UINT8 BOOL",
    "CastLike": _FI + " UINT8 BOOL", "Ceil": _F, "Celu": _F, "Clip": _F, "Concat": _FIB,
    "Constant": "FP32 FP16 BF16 FP8 FP4 INT4 INT32 INT64 BOOL",
    "ConstantOfShape": "FP32 FP16 BF16 FP8 FP4 INT4 INT32 INT64 BOOL", "Conv": _F, "ConvTranspose": _F, "Cos": _F,
    "Cosh": _F, "CumSum": _F, "DeformConv": "FP32 FP16", "DepthToSpace": _FI,
    "DequantizeLinear": "INT8 FP8 FP4 INT4", "Div": _FI, "Dropout": _F, "Einsum": _F, "Elu": _F, "Equal": _FI,
    "Erf": _F, "Exp": _F, "Expand": _FIB, "EyeLike": _FIB, "Flatten": _FIB, "Floor": _F, "Gather": _FIB,
    "GatherElements": _FIB, "GatherND": _FIB, "Gelu": "FP32 FP16 BF16 INT8 INT32 INT64", "Gemm": _F,
    "GlobalAveragePool": _F, "GlobalLpPool": _F, "GlobalMaxPool": _F, "Greater": _FI, "GreaterOrEqual": _FI,
    "GridSample": "FP32 FP16", "GroupNormalization": _F, "GRU": _F, "HammingWindow": "FP32 FP16",
    "HannWindow": "FP32 FP16", "HardSigmoid": _F, "HardSwish": _F, "Hardmax": _F, "Identity": _FIB, "If": _FIB,
    "ImageScaler": _F, "InstanceNormalization": _F, "IsInf": _F, "IsNaN": _FI, "LayerNormalization": _F,
    "LeakyRelu": _F, "Less": _FI, "LessOrEqual": _FI, "Log": _F, "LogSoftmax": _F, "Loop": _FIB, "LRN": _F,
    "LSTM": _F, "LpNormalization": _F, "LpPool": _F, "MatMul": _F, "Max": _FI, "MaxPool": _F,
    "Mean": "FP32 FP16 BF16 FP8 INT32 INT64", "MeanVarianceNormalization": _F, "Min": _FI, "Mish": "FP32 FP16",
    "Mod": _FI, "Mul": _FI, "Neg": _FI, "NonMaxSuppression": "FP32 FP16", "NonZero": "FP32 FP16", "Not": "BOOL",
    "OneHot": _FIB, "Or": "BOOL", "Pad": _FI, "ParametricSoftplus": _F, "Pow": _FI, "PRelu": _F,
    "QuantizeLinear": _F, "RandomNormal": _F, "RandomNormalLike": _F, "RandomUniform": _F, "RandomUniformLike": _F,
    "Range": _FI, "Reciprocal": _F, "ReduceL1": _FI, "ReduceL2": _FI, "ReduceLogSum": _FI, "ReduceLogSumExp": _FI,
    "ReduceMax": _FI, "ReduceMean": _FI, "ReduceMin": _FI, "ReduceProd": _FI, "ReduceSum": _FI,
    "ReduceSumSquare": _FI, "Relu": _FI, "Reshape": _FIB, "Resize": _F, "ReverseSequence": _FIB,
    "RMSNormalization": _F, "RNN": _F, "RoiAlign": "FP32 FP16", "RotaryEmbedding": _F, "Round": _F, "STFT": "FP32",
    "ScaledTanh": _F, "Scan": _F, "Scatter": _FI, "ScatterElements": _FI, "ScatterND": _FI, "Selu": _F,
    "Shape": _FIB, "Shrink": _FI, "Sigmoid": _F, "Sign": _FI, "Sin": _F, "Sinh": _F, "Size": _FIB, "Slice": _FIB,
    "Softmax": _F, "Softplus": _F, "Softsign": _F, "SpaceToDepth": _FI, "Split": _FIB, "Sqrt": _F, "Squeeze": _FIB,
    "Sub": _FI, "Sum": _FI, "Tan": _F, "Tanh": _F, "TensorScatter": "FP32 FP16 BF16 INT32", "ThresholdedRelu": _F,
    "Tile": _FIB, "TopK": _FI, "Transpose": _FIB, "Trilu": _FIB, "Unsqueeze": _FIB, "Upsample": _F, "Where": _FIB,
    "Xor": "BOOL",
}.items()}

#: Added in TensorRT 11.1's table.
SUPPORTED_11 = {"Swish": tuple(_F.split())}

#: Operators the table lists as not supported (the parser refuses them; a same-named plugin is not looked for).
UNSUPPORTED = frozenset(["AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "Col2Im", "CenterCropPad", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det", "DynamicQuantizeLinear", "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul", "RegexFullMatch", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength", "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer", "StringSplit", "TfIdfVectorizer", "Unique"])

#: ONNX TensorProto element types -> the table's type names (those TensorRT knows; others cannot be imported).
ONNX_TYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
              16: "BF16", 17: "FP8", 18: "FP8", 19: "FP8", 20: "FP8", 22: "INT4", 23: "FP4"}


def supported(op_type: str, major: int) -> tuple[str, ...] | None:
    """The types ``op_type`` supports in TensorRT ``major``, or None when the parser has no importer for it."""
    if op_type in SUPPORTED:
        return SUPPORTED[op_type]
    if major >= 11 and op_type in SUPPORTED_11:
        return SUPPORTED_11[op_type]
    return None
