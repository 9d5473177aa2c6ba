"""A transformers model directory (GPT2LMHeadModel + a fast tokenizer) from one of our models.

    AutoModelForCausalLM.from_pretrained(dir); AutoTokenizer.from_pretrained(dir)

gives our model's logits (tests/test_export_hf.py) and our tokenizer's ids; `apply_chat_template`
renders our chat template. Written by `python -m src.export CKPT OUT --format hf`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from src.exporting.chat_jinja import chat_template_jinja
from src.exporting.gpt2 import LAYER_NORM_EPS, gpt2_tensors, mlp_hidden, require_gpt2
from src.exporting.hf_tokenizer import build_hf_tokenizer

HF_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# transformers keeps GPT-2's Linear layers as Conv1D, whose weight is stored [in, out].
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gpt2_config(cfg: dict[str, Any], tokenizer: Any, chat: bool) -> Any:
    from transformers import GPT2Config

    stop_ids = sorted(set(tokenizer.special_tokens.values())) if chat else [tokenizer.eot_id]
    return GPT2Config(
        vocab_size=cfg["vocab_size"], n_positions=cfg["block_size"], n_embd=cfg["n_embd"],
        n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_inner=mlp_hidden(cfg),
        # "gelu" is the exact erf GELU (torch's F.gelu default), which our MLP uses; GPT-2's own
        # checkpoints use "gelu_new", the tanh approximation.
        activation_function="gelu", layer_norm_epsilon=LAYER_NORM_EPS,
        resid_pdrop=cfg["dropout"], embd_pdrop=cfg["dropout"], attn_pdrop=cfg["dropout"],
        scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False,
        tie_word_embeddings=cfg["tie_embeddings"],
        # No begin-of-text token: our documents start with their first character.
        bos_token_id=None, eos_token_id=stop_ids if len(stop_ids) > 1 else stop_ids[0],
        pad_token_id=tokenizer.eot_id,
    )


def hf_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel's state dict for our `model` (float32)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in gpt2_tensors(model).items():
        if name.endswith(CONV1D_SUFFIXES):
            tensor = tensor.t().contiguous()
        out[name] = tensor
    if model.cfg["tie_embeddings"]:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def write_hf(loaded: Any, directory: Path, dtype: str) -> None:
    """Write the transformers model and tokenizer for `loaded` (a LoadedModel) into `directory`."""
    from transformers import GenerationConfig, GPT2LMHeadModel

    cfg = loaded.model.cfg
    require_gpt2(cfg, "hf")
    config = gpt2_config(cfg, loaded.tokenizer, loaded.chat)
    hf_model = GPT2LMHeadModel(config)
    missing, unexpected = hf_model.load_state_dict(hf_state_dict(loaded.model), strict=False)
    # GPT-2's attention keeps a causal-mask buffer in some transformers versions; nothing else may differ.
    missing = [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))]
    if missing or unexpected:
        raise AssertionError(f"GPT-2 state dict mismatch: missing {missing}, unexpected {unexpected}")
    hf_model = hf_model.to(HF_DTYPES[dtype]).eval()
    hf_model.generation_config = GenerationConfig(
        bos_token_id=None, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    hf_model.save_pretrained(directory)
    hf_tokenizer = build_hf_tokenizer(loaded.tokenizer, chat_template_jinja(), cfg["block_size"])
    hf_tokenizer.save_pretrained(directory)
    _portable_tokenizer_config(directory / "tokenizer_config.json", hf_tokenizer.chat_template)


def _portable_tokenizer_config(path: Path, chat_template: str) -> None:
    """Write the tokenizer config in the form transformers 4.x reads as well as 5.x: the class by
    its old name, the chat tags as additional_special_tokens (4.x reads `extra_special_tokens` as a
    mapping) and the chat template inline (older versions ignore chat_template.jinja)."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        config["additional_special_tokens"] = extra
    config["chat_template"] = chat_template
    config["add_bos_token"] = config["add_eos_token"] = False
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
