"""Sample continuations of fixed prompts during training (a plain loop without a KV cache: it runs a
few dozen tokens every validation, so simplicity beats speed here; the chat engine lives elsewhere).
Token choice is the engine's own `src.generation.sampling.sample`, so both sample alike."""

from __future__ import annotations

import torch
from torch import nn

from src.generation.sampling import SamplingParams, sample


@torch.no_grad()
def sample_tokens(model: nn.Module, prompt: list[int], n_new: int, block_size: int,
                  temperature: float, top_k: int, generator: torch.Generator,
                  device: torch.device) -> list[int]:
    """Continue `prompt` by `n_new` tokens; randomness only from the CPU `generator` (never the
    global RNG, which training's dropout uses and resume restores)."""
    params = SamplingParams(temperature=temperature, top_k=top_k, max_new_tokens=n_new)
    idx = torch.tensor([prompt], dtype=torch.long, device=device)
    for _ in range(n_new):
        logits, _ = model(idx[:, -block_size:])
        # The draw happens on the CPU, where the generator lives, whatever the training device.
        next_id = sample(logits[:, -1].float().cpu(), params, generator=generator)
        idx = torch.cat([idx, next_id.view(1, 1).to(device)], dim=1)
    return idx[0, len(prompt):].tolist()
