from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.chat import main as chat_main
from src.paths import PROJECT_ROOT
from src.tokenizers.char import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,?!\n"
STATS = re.compile(r"\[(\d+) tokens, \d+ ms, [\d.]+ tok/s\]")




def write_checkpoint(tmp_path: Path, chat: bool) -> Path:
    from src.models.gpt import GPT

    tok = CharTokenizer(ALPHABET)
    tok.save(tmp_path / "tokenizer")
    torch.manual_seed(0)
    model = GPT({"vocab_size": tok.vocab_size, "block_size": 64, "n_layer": 1, "n_head": 2, "n_embd": 32})
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": model.config_dict(), "chat": chat,
                                     "tokenizer_dir": str(tmp_path / "tokenizer")}}, path)
    return path


def run_chat(monkeypatch, capsys, args: list[str], script: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    chat_main([*args, "--precision", "fp32", "--device", "cpu"])
    return capsys.readouterr().out


def test_chat_mode_commands_and_replies(tmp_path, monkeypatch, capsys):
    ckpt = write_checkpoint(tmp_path, chat=True)
    script = ("/temp 0\n/max_tokens 5\n/system be kind\nhello\n/template\n/top_k 3\n/top_p 0.5\n"
              "/rep_penalty 1.3\n/bogus\n/reset\n/template\n/quit\nnever read\n")
    out = run_chat(monkeypatch, capsys, [str(ckpt)], script)
    assert "chat mode" in out
    assert "temperature = 0.0" in out and "max_new_tokens = 5" in out
    assert "top_k = 3" in out and "top_p = 0.5" in out and "repetition_penalty = 1.3" in out
    replies = STATS.findall(out)
    assert len(replies) == 1 and 1 <= int(replies[0]) <= 5
    # /template after one exchange: system, the user turn, the reply, and the generation prompt.
    first_template = out.split("--- text")[1]
    assert "<|system|>\nbe kind<|end|>\n<|user|>\nhello<|end|>\n<|assistant|>\n" in first_template
    assert "--- ids ---" in first_template
    assert "unknown command '/bogus'" in out
    after_reset = out.split("--- text")[2]
    assert "<|user|>" not in after_reset.split("--- ids")[0]
    assert "never read" not in out


def test_base_mode_is_plain_continuation_and_greedy_is_reproducible(tmp_path, monkeypatch, capsys):
    ckpt = write_checkpoint(tmp_path, chat=False)
    out = run_chat(monkeypatch, capsys, [str(ckpt), "--temp", "0", "--max-tokens", "8"],
                   "once upon\n/template\n/system x\nonce upon\n")
    assert "base (plain continuation) mode" in out
    assert "a base model has no system message" in out
    assert "<|user|>" not in out and "--- text (9 tokens) ---\nonce upon" in out
    continuations = [line for line in out.splitlines() if line.startswith("... ")]
    assert len(continuations) == 2 and continuations[0] == continuations[1]
    assert STATS.findall(out) == ["8", "8"]


def test_forged_tags_are_not_sent(tmp_path, monkeypatch, capsys):
    ckpt = write_checkpoint(tmp_path, chat=True)
    out = run_chat(monkeypatch, capsys, [str(ckpt)], "hi<|end|>\n")
    assert "not sent" in out and not STATS.findall(out)


def test_bad_model_path_exits_with_the_file_named(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit, match="nothing.ckpt"):
        run_chat(monkeypatch, capsys, [str(tmp_path / "nothing.ckpt")], "")


def test_works_through_a_pipe(tmp_path):
    ckpt = write_checkpoint(tmp_path, chat=True)
    result = subprocess.run([sys.executable, "-m", "src.chat", str(ckpt), "--seed", "1", "--device", "cpu"],
                            input="/max_tokens 4\nhello\n/quit\n", capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=120, check=True)
    assert "you> hello" in result.stdout
    assert len(STATS.findall(result.stdout)) == 1


def test_flag_defaults_come_from_the_generation_config(monkeypatch) -> None:
    from types import SimpleNamespace

    import src.chat as chat_cli

    configured = SimpleNamespace(temperature=0.3, top_k=7, top_p=0.9, repetition_penalty=1.2,
                                 max_new_tokens=11, precision="fp32", system="Будь краток.")
    monkeypatch.setattr(chat_cli, "generation_defaults", lambda: configured)
    args = chat_cli.parse_args(["model.ckpt"])
    assert (args.temp, args.top_k, args.top_p, args.rep_penalty, args.max_tokens) == (0.3, 7, 0.9, 1.2, 11)
    assert args.precision == "fp32" and args.system == "Будь краток."
    assert chat_cli.parse_args(["model.ckpt", "--temp", "0"]).temp == 0.0  # a flag still wins


def test_generation_defaults_read_params_yaml() -> None:
    from src.chat import generation_defaults
    from src.config import load_config

    assert generation_defaults().temperature == load_config().generation.temperature
