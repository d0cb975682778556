"""llmkit.quantize: quantizers (absmax, zero-point, group-wise, NF4, GPTQ, AWQ) and quantized layers.

The layers and their storage formats live in ``llmkit.model.qlinear`` (the
loader below this layer rebuilds them); the algorithms that produce them live here.
"""

from llmkit.model.qlinear import NF4Linear, QuantLinear, nf4_codebook
from llmkit.quantize.apply import METHODS, quantize_model
from llmkit.quantize.errors import QuantizationError
from llmkit.quantize.gptq import gptq_quantize, hessian
from llmkit.quantize.rtn import GroupQuant, absmax_int8, dequantize, quantize_groupwise, zeropoint_int8

__all__ = ["METHODS", "GroupQuant", "NF4Linear", "QuantLinear", "QuantizationError", "absmax_int8", "dequantize",
           "gptq_quantize", "hessian", "nf4_codebook", "quantize_groupwise", "quantize_model", "zeropoint_int8"]
