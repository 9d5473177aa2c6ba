"""Weight formats for decoding: fp32, fp16, bf16, and int8 weight-only Linear layers (CPU).

Batch-1 decoding reads every weight once per token, so on a CPU its speed is set by memory
bandwidth: 48M fp32 parameters are ~190 MB per token. Int8 weights with one scale per output
channel cut that to ~50 MB, and PyTorch's `_weight_int8pack_mm` kernel multiplies bf16 activations
by them directly (it is the kernel torchao uses for CPU weight-only int8). Everything that is not a
Linear weight (embeddings, norms) runs in bf16. The int8 error is one rounding step of
max|w| / 127 per row, small next to the weights' spread; `logit_agreement` measures it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INT8_MAX = 127


def int8_kernel_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


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


def _quantize_linears(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
        else:
            _quantize_linears(child)


def convert_for_decoding(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """A copy of `model` on `device` in `precision` (the original is left untouched)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: unknown value {precision!r}; expected one of {list(PRECISIONS)}")
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError("precision=int8 is the CPU fast path; use bf16 on GPU")
        if not int8_kernel_available():
            raise ValueError(f"precision=int8 needs torch.ops.aten._weight_int8pack_mm "
                             f"(missing in torch {torch.__version__}); use bf16 or fp32")
    converted = copy.deepcopy(model).to(device)
    if precision == "int8":
        # Quantize from the fp32 weights, then move the rest (embeddings, norms) to bf16. A tied
        # head becomes its own int8 copy; the embedding table keeps the bf16 original for lookups.
        _quantize_linears(converted)
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
