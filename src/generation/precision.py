"""Weight formats for decoding: fp32, fp16, bf16, and int8 / int4 weight-only Linear layers (CPU).

Batch-1 decoding reads every weight once per token, so on a CPU its speed is set by memory
bandwidth: 48M fp32 parameters are ~190 MB per token. Int8 weights with one scale per output
channel cut that to ~50 MB, and PyTorch's `_weight_int8pack_mm` kernel multiplies bf16 activations
by them directly (the kernel torchao uses for CPU weight-only int8). Everything that is not a
Linear weight (embeddings, norms) runs in bf16. The int8 error is one rounding step of
max|w| / 127 per row; on dialog48m with random weights the logits move by ~2.5% (relative L2),
see `logit_agreement` and the benchmark. int4 (groups of 64 inputs) halves the bytes again and fits
the model in a 32 MB L3 cache, but moves the logits by ~25%: an option, not the default.
Measured alternatives that lost here: fp32/bf16 GEMV (slower), torch.ao dynamic quantization
(similar speed, 2x the logit error).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INT8_MAX = 127
INT4_LEVELS = 15
INT4_GROUP = 64  # inputs sharing one scale/offset: smaller = more accurate, more bytes
INT4_INNER_K_TILES = 8  # the packing layout the CPU int4 kernel expects


KERNELS = {"int8": "_weight_int8pack_mm", "int4": "_weight_int4pack_mm_for_cpu"}


def int8_kernel_available() -> bool:
    return hasattr(torch.ops.aten, KERNELS["int8"])


def default_precision(device: torch.device) -> str:
    """bf16 on GPU; int8 weight-only on CPU where the kernel exists, else fp32."""
    if device.type == "cuda":
        return "bf16"
    return "int8" if int8_kernel_available() else "fp32"


class Int8Linear(nn.Module):
    """A bias-optional Linear whose weight is int8 with one bf16 scale per output channel."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scales = (w.abs().amax(dim=1) / INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
        q = torch.round(w / scales[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", q.contiguous())
        self.register_buffer("scales", scales.to(torch.bfloat16))
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()
        y = torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)

    def dequantized(self) -> Tensor:
        return self.weight_int8.float() * self.scales.float()[:, None]


class Int4Linear(nn.Module):
    """A Linear whose weight is 4-bit with a bf16 scale and offset per group of INT4_GROUP inputs
    (asymmetric: w ~ min + q * (max - min) / 15), packed for `_weight_int4pack_mm_for_cpu`."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        n, k = w.shape
        if k % INT4_GROUP:
            raise ValueError(f"int4 needs in_features divisible by {INT4_GROUP} (got {k})")
        groups = w.reshape(n, k // INT4_GROUP, INT4_GROUP)
        low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((high - low) / INT4_LEVELS).clamp(min=torch.finfo(torch.float32).tiny)
        q = torch.round((groups - low) / scale).clamp(0, INT4_LEVELS).to(torch.int32).reshape(n, k)
        # The kernel computes (q - 8) * scale + zero, so zero = low + 8 * scale.
        zero = low + scale * ((INT4_LEVELS + 1) // 2)
        self.in_features, self.out_features = k, n
        self.register_buffer("weight_int4", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INT4_INNER_K_TILES))
        self.register_buffer("scales_and_zeros",
                             torch.stack([scale[..., 0], zero[..., 0]], dim=-1).transpose(0, 1).contiguous()
                             .to(torch.bfloat16))
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.weight_int4, INT4_GROUP, self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)


QUANTIZED = {"int8": Int8Linear, "int4": Int4Linear}


def _quantize_linears(module: nn.Module, kind: type[nn.Module]) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, kind(child))
        else:
            _quantize_linears(child, kind)


def convert_for_decoding(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """A copy of `model` on `device` in `precision` (the original is left untouched)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: unknown value {precision!r}; expected one of {list(PRECISIONS)}")
    if precision in QUANTIZED:
        if device.type != "cpu":
            raise ValueError(f"precision={precision} is a CPU fast path; use bf16 on GPU")
        if not hasattr(torch.ops.aten, KERNELS[precision]):
            raise ValueError(f"precision={precision} needs torch.ops.aten.{KERNELS[precision]} "
                             f"(missing in torch {torch.__version__}); use bf16 or fp32")
    converted = copy.deepcopy(model).to(device)
    if precision in QUANTIZED:
        # Quantize from the fp32 weights, then move the rest (embeddings, norms) to bf16. A tied
        # head becomes its own quantized copy; the embedding keeps the bf16 original for lookups.
        _quantize_linears(converted, QUANTIZED[precision])
        return converted.to(torch.bfloat16)
    return converted.to(DTYPES[precision])


@torch.inference_mode()
def logit_agreement(reference: nn.Module, candidate: nn.Module, idx: Tensor) -> dict[str, float]:
    """How close `candidate`'s next-token predictions are to `reference`'s on the sequences `idx`
    [B, T] (teacher-forced): top-1 agreement and the relative L2 error of the logits."""
    ref = reference(idx)[0].float()
    cand = candidate(idx)[0].float()
    top1 = (ref.argmax(-1) == cand.argmax(-1)).float().mean().item()
    rel = (torch.linalg.vector_norm(cand - ref) / torch.linalg.vector_norm(ref)).item()
    kl = F.kl_div(cand.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="batchmean")
    return {"top1_agreement": top1, "relative_logit_error": rel, "kl_per_position": kl.item() / idx.shape[1]}
