from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from src.export import export
from src.export import main as export_main
from src.generation.engine import Engine
from src.generation.loading import LoadError, load_checkpoint, load_for_generation
from src.generation.sampling import GREEDY
from src.models.gpt import GPT
from src.paths import PROJECT_ROOT
from src.tokenizers.char import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,?!\n"




def write_checkpoint(tmp_path: Path, **options) -> tuple[Path, GPT]:
    """A checkpoint laid out as the pretrain stage writes it (Lightning's dict, "model." keys)."""
    tok = CharTokenizer(ALPHABET)
    tok.save(tmp_path / "tokenizer")
    torch.manual_seed(0)
    cfg = {"vocab_size": tok.vocab_size, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32, **options}
    model = GPT(cfg).eval()
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"model": model.config_dict(), "tokenizer_dir": str(tmp_path / "tokenizer")},
            "global_step": 10}
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    return path, model


@pytest.mark.parametrize("options", [{}, {"tie_embeddings": False, "pos_emb": "rope"}])
def test_fp32_export_reproduces_the_checkpoint(tmp_path, options):
    ckpt, model = write_checkpoint(tmp_path, **options)
    out = export(ckpt, tmp_path / "export")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer"}
    stored = load_file(out / "model.safetensors")
    assert ("lm_head.weight" in stored) == (not model.cfg["tie_embeddings"])
    loaded = load_for_generation(out)
    idx = torch.randint(0, model.cfg["vocab_size"], (2, 16))
    assert torch.equal(loaded.model(idx)[0], model(idx)[0])
    assert loaded.tokenizer.encode("hi there") == CharTokenizer(ALPHABET).encode("hi there")
    assert json.loads((out / "config.json").read_text())["model"] == model.config_dict()


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_exports_are_smaller_and_close(tmp_path, dtype):
    ckpt, model = write_checkpoint(tmp_path)
    fp32 = export(ckpt, tmp_path / "fp32")
    half = export(ckpt, tmp_path / dtype, dtype=dtype)
    size = (half / "model.safetensors").stat().st_size
    assert size < 0.6 * (fp32 / "model.safetensors").stat().st_size
    loaded = load_for_generation(half)
    idx = torch.randint(0, model.cfg["vocab_size"], (1, 16))
    assert torch.allclose(loaded.model(idx)[0], model(idx)[0], atol=0.05)


def test_engine_generates_the_same_from_export_and_checkpoint(tmp_path):
    ckpt, _ = write_checkpoint(tmp_path)
    out = export(ckpt, tmp_path / "export")
    prompt = [5, 6, 7]
    runs = [Engine(load_for_generation(p).model, precision="fp32").generate(
        [prompt], GREEDY.with_(max_new_tokens=10), stop_ids=[])[0].tokens for p in (ckpt, out)]
    assert runs[0] == runs[1]


def test_loading_an_export_needs_no_lightning(tmp_path):
    ckpt, _ = write_checkpoint(tmp_path)
    out = export(ckpt, tmp_path / "export")
    code = ("import sys; from src.generation.loading import load_for_generation; "
            f"m = load_for_generation({str(out)!r}); "
            "assert not any(n.split('.')[0] in ('lightning', 'pytorch_lightning') for n in sys.modules), "
            "'lightning imported'")
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)


def test_corrupt_weights_are_reported_with_the_file(tmp_path):
    ckpt, _ = write_checkpoint(tmp_path)
    out = export(ckpt, tmp_path / "export")
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(LoadError, match="model.safetensors.*corrupt"):
        load_for_generation(out)


def test_broken_or_mismatched_config_is_reported(tmp_path):
    ckpt, _ = write_checkpoint(tmp_path)
    out = export(ckpt, tmp_path / "export")
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["n_embd"] = 64
    config_path.write_text(json.dumps(config))
    with pytest.raises(LoadError, match="do not match the model config"):
        load_for_generation(out)
    config_path.write_text("{not json")
    with pytest.raises(LoadError, match="config.json: not valid JSON"):
        load_for_generation(out)


def test_bad_checkpoints_are_reported(tmp_path, capsys):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(LoadError, match="garbage.ckpt: not a readable checkpoint"):
        load_checkpoint(garbage)
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(LoadError, match="plain.ckpt: not a Lightning checkpoint"):
        load_checkpoint(plain)
    ckpt, model = write_checkpoint(tmp_path)
    bad = torch.load(ckpt, weights_only=True)
    del bad["state_dict"]["model.transformer.h.0.mlp.c_fc.weight"]
    torch.save(bad, tmp_path / "missing.ckpt")
    with pytest.raises(LoadError, match=r"missing.ckpt: weights do not match.*c_fc"):
        load_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(SystemExit, match="garbage.ckpt"):
        export_main([str(garbage), str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()
    with pytest.raises(LoadError, match="no such checkpoint"):
        load_for_generation(tmp_path / "absent")


def test_export_replaces_an_existing_directory(tmp_path):
    ckpt, _ = write_checkpoint(tmp_path)
    out = tmp_path / "export"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    export(ckpt, out)
    assert not (out / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]
