"""One GGUF file for llama.cpp: architecture `gpt2`, our SentencePiece vocabulary, fp16/q8_0/fp32.

Tensors carry llama.cpp's gpt2 names (token_embd, position_embd, blk.N.attn_norm/attn_qkv/
attn_output/ffn_norm/ffn_up/ffn_down, output_norm, and output when the head is untied); llama.cpp
requires every gpt2 bias, so absent ones are written as zeros (exact). Matrices take the chosen
type (q8_0 falls back to fp16 for a matrix whose rows are not a multiple of 32 values, as
llama.cpp's converter does); norms and biases stay fp32.

The vocabulary is written as llama.cpp's SentencePiece ("llama") tokenizer: pieces, scores and
types, byte-fallback pieces as BYTE tokens, our special tokens as CONTROL tokens (llama.cpp parses
them in templates, not in plain text unless asked), the newline and the other user symbols as
USER_DEFINED (always atomic, as ours), no added begin-of-text token and no space prefix. What
llama.cpp computes differently from us: its gpt2 graph uses the tanh approximation of GELU (we use
the exact one) and a literal U+2581 in the text is read as a space; both are small and say so in
the benchmark (src/bench/export_decode.py), which compares its logits with ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from src.exporting.chat_jinja import chat_template_jinja
from src.exporting.gpt2 import LAYER_NORM_EPS, ExportError, gpt2_tensors, mlp_hidden, require_gpt2
from src.exporting.hf_tokenizer import (
    SP_BYTE,
    SP_CONTROL,
    SP_NORMAL,
    SP_UNKNOWN,
    SP_USER_DEFINED,
    sentencepiece_proto,
)
from src.tokenizers.base import CHAT_TOKENS, SPECIAL_TOKENS

ARCH = "gpt2"
# GGUF types: "fp16" and "q8_0" quantize matrices only, as llama.cpp's own converter does.
GGUF_DTYPES = ("fp16", "q8_0", "fp32")
Q8_0_BLOCK = 32

_LAYER_PARTS = {
    "ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down",
}
_TOP = {
    "transformer.wte": "token_embd", "transformer.wpe": "position_embd",
    "transformer.ln_f": "output_norm", "lm_head": "output",
}


def gguf_name(name: str) -> str:
    """llama.cpp's gpt2 tensor name for one of ours (`transformer.h.3.ln_1.weight` ->
    `blk.3.attn_norm.weight`)."""
    module, kind = name.rsplit(".", 1)
    if module in _TOP:
        return f"{_TOP[module]}.{kind}"
    prefix = "transformer.h."
    if module.startswith(prefix):
        layer, part = module[len(prefix):].split(".", 1)
        if part in _LAYER_PARTS:
            return f"blk.{int(layer)}.{_LAYER_PARTS[part]}.{kind}"
    raise KeyError(f"no gguf name for tensor {name!r}")


def gguf_tensors(model: Any, dtype: str) -> list[tuple[str, np.ndarray, Any]]:
    """(gguf name, array, GGMLQuantizationType) for every tensor; q8_0 arrays are the packed bytes."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    out = []
    for name, tensor in gpt2_tensors(model).items():
        data = tensor.numpy().astype(np.float32)
        if data.ndim == 1 or dtype == "fp32":
            out.append((gguf_name(name), data, GGMLQuantizationType.F32))
        elif dtype == "q8_0" and data.shape[-1] % Q8_0_BLOCK == 0:
            out.append((gguf_name(name), quantize(data, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0))
        else:
            out.append((gguf_name(name), data.astype(np.float16), GGMLQuantizationType.F16))
    return out


def vocabulary(tokenizer: Any) -> tuple[list[str], list[float], list[int]]:
    """tokens, scores and llama.cpp token types for a SentencePiece BPE tokenizer."""
    from gguf import TokenType

    if tokenizer.kind != "bpe":
        raise ExportError(f"--format gguf needs the BPE tokenizer; this model uses the {tokenizer.kind!r} "
                          "tokenizer, which llama.cpp's vocabularies cannot express (use --format hf)")
    proto = sentencepiece_proto(tokenizer)
    if not proto.trainer_spec.byte_fallback:
        raise ExportError("--format gguf needs a tokenizer trained with tokenizer.byte_fallback=true "
                          "(llama.cpp spells unknown characters with byte pieces)")
    kinds = {SP_NORMAL: TokenType.NORMAL, SP_UNKNOWN: TokenType.UNKNOWN, SP_CONTROL: TokenType.CONTROL,
             SP_USER_DEFINED: TokenType.USER_DEFINED, SP_BYTE: TokenType.BYTE}
    tokens, scores, types = [], [], []
    for piece in proto.pieces:
        tokens.append(piece.piece)
        scores.append(float(piece.score))
        kind = TokenType.CONTROL if piece.piece in SPECIAL_TOKENS else kinds.get(piece.type, TokenType.UNUSED)
        types.append(int(kind))
    return tokens, scores, types


def write_gguf(loaded: Any, path: Path, dtype: str, name: str = "homunculus") -> None:
    """Write `loaded` (a LoadedModel) as a GGUF file at `path`."""
    from gguf import GGUFWriter, LlamaFileType

    if dtype not in GGUF_DTYPES:
        raise ExportError(f"--dtype {dtype!r}: GGUF export writes one of {list(GGUF_DTYPES)}")
    model, tokenizer = loaded.model, loaded.tokenizer
    cfg = model.cfg
    require_gpt2(cfg, "gguf")
    tokens, scores, types = vocabulary(tokenizer)
    if len(tokens) != cfg["vocab_size"]:
        raise ExportError(f"the tokenizer has {len(tokens)} pieces but model.vocab_size is {cfg['vocab_size']}")
    tensors = gguf_tensors(model, dtype)
    file_type = {"fp32": LlamaFileType.ALL_F32, "fp16": LlamaFileType.MOSTLY_F16,
                 "q8_0": LlamaFileType.MOSTLY_Q8_0}[dtype]
    writer = GGUFWriter(str(path), ARCH)
    try:
        writer.add_name(name)
        writer.add_file_type(int(file_type))
        writer.add_context_length(cfg["block_size"])
        writer.add_embedding_length(cfg["n_embd"])
        writer.add_feed_forward_length(mlp_hidden(cfg))
        writer.add_block_count(cfg["n_layer"])
        writer.add_head_count(cfg["n_head"])
        writer.add_layer_norm_eps(LAYER_NORM_EPS)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_unk_token_id(tokenizer.unk_id)
        # <|endoftext|> separates documents in training, so it is both the begin and the end of one;
        # none is added when text is tokenized (ours adds none either).
        writer.add_bos_token_id(tokenizer.eot_id)
        writer.add_eos_token_id(tokenizer.eot_id)
        writer.add_eot_token_id(tokenizer.special_tokens[CHAT_TOKENS[-1]])
        writer.add_pad_token_id(tokenizer.eot_id)
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(False)
        writer.add_add_space_prefix(False)
        writer.add_chat_template(chat_template_jinja())
        for tensor_name, data, qtype in tensors:
            # Plain float arrays carry their type; packed q8_0 bytes need it said.
            writer.add_tensor(tensor_name, data, raw_dtype=qtype if data.dtype == np.uint8 else None)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
