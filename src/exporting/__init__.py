"""Exports for other runtimes: a transformers model directory (hf.py) and a GGUF file (gguf_file.py).

Both target GPT-2's architecture (learned positions, LayerNorm, exact-erf GELU MLP, tied or untied
head), which is this project's baseline; `gpt2.require_gpt2` refuses models built with options
GPT-2 lacks. The native safetensors export stays in src/export.py, which is the one entry point:

    python -m src.export CHECKPOINT OUT --format native|hf|gguf [--dtype ...]
"""
