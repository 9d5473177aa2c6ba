"""`--format gguf`: the file read back with the gguf package holds our tensors, under the names and
shapes llama.cpp's gpt2 loader asks for, and our vocabulary and chat template."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from src.export import export_gguf
from src.export import main as export_main
from src.exporting.chat_jinja import chat_template_jinja
from src.exporting.gpt2 import ExportError
from src.generation import chat_template
from src.models.gpt import GPT
from src.tokenizers import load_tokenizer
from src.tokenizers.char import CharTokenizer
from tests.export_fixtures import train_small_bpe, write_checkpoint

gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory) -> Path:
    return train_small_bpe(tmp_path_factory.mktemp("gguf_bpe") / "tokenizer")


@pytest.fixture(scope="module")
def baseline(bpe_dir, tmp_path_factory) -> tuple[Path, GPT]:
    tok = load_tokenizer(bpe_dir)
    return write_checkpoint(tmp_path_factory.mktemp("gguf_ckpt"), bpe_dir, tok.vocab_size)


def field(reader, key):
    return reader.fields[key].contents()


def llama_cpp_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """The shapes (ne, innermost first) llama.cpp's gpt2 loader creates, written out here from its
    loader independently of the exporter's own name table."""
    e, v, ctx, ff = cfg["n_embd"], cfg["vocab_size"], cfg["block_size"], int(cfg["mlp_ratio"] * cfg["n_embd"])
    shapes = {"token_embd.weight": (e, v), "position_embd.weight": (e, ctx),
              "output_norm.weight": (e,), "output_norm.bias": (e,)}
    for i in range(cfg["n_layer"]):
        shapes.update({
            f"blk.{i}.attn_norm.weight": (e,), f"blk.{i}.attn_norm.bias": (e,),
            f"blk.{i}.attn_qkv.weight": (e, 3 * e), f"blk.{i}.attn_qkv.bias": (3 * e,),
            f"blk.{i}.attn_output.weight": (e, e), f"blk.{i}.attn_output.bias": (e,),
            f"blk.{i}.ffn_norm.weight": (e,), f"blk.{i}.ffn_norm.bias": (e,),
            f"blk.{i}.ffn_up.weight": (e, ff), f"blk.{i}.ffn_up.bias": (ff,),
            f"blk.{i}.ffn_down.weight": (ff, e), f"blk.{i}.ffn_down.bias": (e,),
        })
    if not cfg["tie_embeddings"]:
        shapes["output.weight"] = (e, v)
    return shapes


def ours_by_gguf_name(model: GPT) -> dict[str, np.ndarray]:
    """Our tensors keyed by the llama.cpp name, spelled out per module (zeros for absent biases)."""
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["transformer.wte.weight"], "position_embd.weight": sd["transformer.wpe.weight"],
           "output_norm.weight": sd["transformer.ln_f.weight"]}
    parts = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
             "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
    for i in range(model.cfg["n_layer"]):
        for theirs, mine in parts.items():
            out[f"blk.{i}.{theirs}.weight"] = sd[f"transformer.h.{i}.{mine}.weight"]
    if not model.cfg["tie_embeddings"]:
        out["output.weight"] = sd["lm_head.weight"]
    return out


@pytest.mark.parametrize("dtype", ["fp16", "q8_0", "fp32"])
def test_tensors_read_back_with_llama_cpp_names_and_values(baseline, tmp_path, dtype):
    ckpt, model = baseline
    path = export_gguf(ckpt, tmp_path / "model.gguf", dtype=dtype)
    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    expected_shapes = llama_cpp_shapes(model.cfg)
    assert set(tensors) == set(expected_shapes)
    ours = ours_by_gguf_name(model)
    Q = gguf.GGMLQuantizationType
    matrix_type = {"fp16": Q.F16, "q8_0": Q.Q8_0, "fp32": Q.F32}[dtype]
    for name, t in tensors.items():
        assert tuple(int(n) for n in t.shape) == expected_shapes[name], name
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(expected_shapes[name])))
        assert t.tensor_type == (matrix_type if len(expected_shapes[name]) == 2 else Q.F32), name
        original = ours.get(name)
        if original is None:  # a bias our model does not have: exactly zero
            assert name.endswith(".bias") and not values.any(), name
            continue
        if dtype == "fp32":
            np.testing.assert_array_equal(values, original)
        elif dtype == "fp16" or values.ndim == 1:
            np.testing.assert_array_equal(values, original.astype(np.float16).astype(np.float32)
                                          if values.ndim == 2 else original)
        else:  # q8_0: each block of 32 is rounded to 1/127 of its largest magnitude
            error = np.abs(values - original).max()
            assert 0 < error <= np.abs(original).max() / 127, name


def test_q8_0_is_about_half_the_size_of_fp16(baseline, tmp_path):
    ckpt, _ = baseline
    fp16 = export_gguf(ckpt, tmp_path / "a.gguf", "fp16").stat().st_size
    q8 = export_gguf(ckpt, tmp_path / "b.gguf", "q8_0").stat().st_size
    assert 0.45 < q8 / fp16 < 0.7


def test_metadata_and_vocabulary(baseline, bpe_dir, tmp_path):
    ckpt, model = baseline
    tok = load_tokenizer(bpe_dir)
    reader = gguf.GGUFReader(export_gguf(ckpt, tmp_path / "m.gguf"))
    cfg = model.cfg
    assert field(reader, "general.architecture") == "gpt2"
    assert field(reader, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_F16)
    for key, value in {"context_length": cfg["block_size"], "embedding_length": cfg["n_embd"],
                       "feed_forward_length": 4 * cfg["n_embd"], "block_count": cfg["n_layer"],
                       "attention.head_count": cfg["n_head"]}.items():
        assert field(reader, f"gpt2.{key}") == value, key
    assert field(reader, "gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5)
    assert field(reader, "tokenizer.ggml.model") == "llama"
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert tokens == [tok.id_to_piece(i) for i in range(tok.vocab_size)]
    types = dict(zip(tokens, field(reader, "tokenizer.ggml.token_type"), strict=True))
    T = gguf.TokenType
    assert all(types[s] == T.CONTROL for s in tok.special_tokens)
    assert types["\n"] == T.USER_DEFINED and types["<unk>"] == T.UNKNOWN
    assert sum(t == T.BYTE for t in types.values()) == 256 and types["<0x41>"] == T.BYTE
    scores = field(reader, "tokenizer.ggml.scores")
    assert len(scores) == len(tokens) and scores[tok.vocab_size - 1] < scores[300]
    assert field(reader, "tokenizer.ggml.eos_token_id") == tok.eot_id
    assert field(reader, "tokenizer.ggml.eot_token_id") == tok.special_tokens["<|end|>"]
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    assert field(reader, "tokenizer.ggml.add_space_prefix") is False
    template = field(reader, "tokenizer.chat_template")
    assert template == chat_template_jinja()
    messages = [{"role": "system", "content": "коротко"}, {"role": "user", "content": "Привет!"}]
    import jinja2
    rendered = jinja2.Environment().from_string(template).render(messages=messages, add_generation_prompt=True)
    assert rendered == chat_template.render(messages)


def test_untied_head_is_written_as_output(bpe_dir, tmp_path):
    tok = load_tokenizer(bpe_dir)
    ckpt, model = write_checkpoint(tmp_path, bpe_dir, tok.vocab_size, tie_embeddings=False, bias=True)
    reader = gguf.GGUFReader(export_gguf(ckpt, tmp_path / "m.gguf", "fp32"))
    tensors = {t.name: t.data for t in reader.tensors}
    np.testing.assert_array_equal(tensors["output.weight"], model.lm_head.weight.detach().numpy())
    np.testing.assert_array_equal(tensors["blk.1.ffn_up.bias"],
                                  model.transformer.h[1].mlp.c_fc.bias.detach().numpy())


def test_refusals_are_one_line_naming_the_reason(bpe_dir, baseline, tmp_path):
    tok = load_tokenizer(bpe_dir)
    ckpt, _ = write_checkpoint(tmp_path / "rope", bpe_dir, tok.vocab_size, pos_emb="rope")
    with pytest.raises(SystemExit, match=r"^export: .*model\.pos_emb='rope'"):
        export_main([str(ckpt), str(tmp_path / "r.gguf"), "--format", "gguf"])
    assert not (tmp_path / "r.gguf").exists()
    with pytest.raises(SystemExit, match="'bf16' is not written by --format gguf"):
        export_main([str(baseline[0]), str(tmp_path / "b.gguf"), "--format", "gguf", "--dtype", "bf16"])
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(SystemExit, match="is a directory"):
        export_main([str(baseline[0]), str(tmp_path / "dir.gguf"), "--format", "gguf"])
    char = CharTokenizer("abc \n")
    char.save(tmp_path / "char")
    ckpt, _ = write_checkpoint(tmp_path / "c", tmp_path / "char", char.vocab_size)
    with pytest.raises(ExportError, match="needs the BPE tokenizer"):
        export_gguf(ckpt, tmp_path / "c.gguf")


def test_gguf_logits_through_a_model_rebuilt_from_the_file(baseline, tmp_path):
    """Our GPT rebuilt from the fp32 file's tensors (by llama.cpp's names) gives our logits: the
    file holds a complete, correctly oriented model."""
    ckpt, model = baseline
    reader = gguf.GGUFReader(export_gguf(ckpt, tmp_path / "m.gguf", "fp32"))
    tensors = {t.name: torch.from_numpy(np.array(t.data)) for t in reader.tensors}
    mine = {v: k for k, v in {
        "transformer.wte.weight": "token_embd.weight", "transformer.wpe.weight": "position_embd.weight",
        "transformer.ln_f.weight": "output_norm.weight", "transformer.ln_f.bias": "output_norm.bias"}.items()}
    rebuilt = GPT({**model.cfg, "bias": True}).eval()
    state = {}
    for name, value in tensors.items():
        if name in mine:
            state[mine[name]] = value
            continue
        _, layer, part, kind = name.split(".")
        module = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
                  "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}[part]
        state[f"transformer.h.{layer}.{module}.{kind}"] = value
    state["lm_head.weight"] = state["transformer.wte.weight"]
    rebuilt.load_state_dict(state, strict=True)
    idx = torch.randint(0, model.cfg["vocab_size"], (1, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(idx)[0], model(idx)[0])


def test_missing_package_is_one_line(baseline, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(SystemExit, match=r"^export: --format gguf needs gguf: pip install -e '\.\[export\]'"):
        export_main([str(baseline[0]), str(tmp_path / "m.gguf"), "--format", "gguf"])


SAMPLE = Path(__file__).resolve().parents[1] / "data" / "models" / "pretrain" / "last.ckpt"


@pytest.mark.skipif(not SAMPLE.is_file(), reason=f"sample model {SAMPLE} not built (dvc repro pretrain)")
@pytest.mark.parametrize("dtype", ["fp16", "q8_0"])
def test_sample_model_reads_back(tmp_path, dtype):
    from src.generation.loading import load_for_generation

    loaded = load_for_generation(SAMPLE)
    reader = gguf.GGUFReader(export_gguf(SAMPLE, tmp_path / "sample.gguf", dtype))
    assert field(reader, "tokenizer.ggml.tokens") == [
        loaded.tokenizer.id_to_piece(i) for i in range(loaded.tokenizer.vocab_size)]
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == set(llama_cpp_shapes(loaded.model.cfg))
    ours = ours_by_gguf_name(loaded.model)
    for name, original in ours.items():
        t = tensors[name]
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(original.shape)
        assert np.abs(values - original).max() <= np.abs(original).max() / 127, name
