"""Sample continuations of fixed prompts during training (a plain loop without a KV cache: it runs a
few dozen tokens every validation, so simplicity beats speed here; the chat engine lives elsewhere)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def sample_tokens(model: nn.Module, prompt: list[int], n_new: int, block_size: int,
                  temperature: float, top_k: int, generator: torch.Generator,
                  device: torch.device) -> list[int]:
    """Continue `prompt` by `n_new` tokens; randomness only from `generator` (never the global RNG,
    which training's dropout uses and resume restores)."""
    idx = torch.tensor([prompt], dtype=torch.long, device=device)
    for _ in range(n_new):
        logits, _ = model(idx[:, -block_size:])
        next_id = pick_token(logits[0, -1].float(), temperature, top_k, generator)
        idx = torch.cat([idx, next_id.view(1, 1).to(device)], dim=1)
    return idx[0, len(prompt):].tolist()


def pick_token(logits: Tensor, temperature: float, top_k: int, generator: torch.Generator) -> Tensor:
    """Greedy at temperature 0; otherwise sample from the top-k (0 = all) of the tempered softmax."""
    if temperature <= 0:
        return logits.argmax()
    logits = logits / temperature
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=generator)[0]
