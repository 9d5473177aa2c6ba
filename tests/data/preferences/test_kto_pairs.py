"""The kto_pairs stage on a tiny chat checkpoint and toy dialogues."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import DictConfig

from src.config import compose, load_config
from src.data.preferences import kto_pairs as stage_module
from src.data.preferences.kto_pairs import SCHEMA, KtoPairsError, val_split
from src.data.preferences.undesirables import PromptRow, choose_prompts, sample_preset
from src.eval.detectors import FAILURES, Detection
from src.generation.engine import Engine
from src.generation.loading import file_sha256
from src.models.gpt import GPT
from src.stage import execute_stage
from tests.training.conftest import FOREIGN_GROUPS
from tests.training.sft_fixtures import TINY_MODEL, sample_conversations, write_tokenizer

N_TRAIN, N_VAL = 12, 3


def write_chat_checkpoint(path: Path, tok, tokenizer_dir: Path, chat: bool = True) -> Path:
    torch.manual_seed(0)
    model = GPT({**TINY_MODEL, "vocab_size": tok.vocab_size})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": model.config_dict(), "tokenizer_dir": str(tokenizer_dir),
                                     "tokenizer_sha256": tok.sha256, "chat": chat}}, path)
    return path


def write_dialogues(path: Path, extra_train: list | None = None) -> list[list[dict]]:
    train = sample_conversations(N_TRAIN, 0) + (extra_train or [])
    val = sample_conversations(N_VAL, 1)
    rows = [(c, "train") for c in train] + [(c, "val") for c in val]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "conversation": [c for c, _ in rows], "split": [s for _, s in rows],
        # rows 0 and 1 score low; the others are fine or have no score (like subtitles)
        "overall_score": [4.0, 5.0] + [8.0 if i % 2 else None for i in range(len(rows) - 2)],
    }), path)
    return train


@pytest.fixture
def setup(tmp_path: Path):
    tok = write_tokenizer(tmp_path / "tokenizer")
    write_chat_checkpoint(tmp_path / "sft" / "best.ckpt", tok, tmp_path / "tokenizer")
    train = write_dialogues(tmp_path / "dialogues" / "dialogues.parquet")
    return tok, train


def config(tmp_path: Path, *overrides: str) -> DictConfig:
    presets = [f"kto_pairs.presets.{name}.count={n}" for name, n in (("loops", 5), ("canned", 4), ("tutorial", 3))]
    return load_config(compose([
        *(f"~{group}" for group in FOREIGN_GROUPS), "tracking.enabled=false",
        f"kto_pairs.dialogues={tmp_path / 'dialogues' / 'dialogues.parquet'}",
        f"kto_pairs.checkpoint={tmp_path / 'sft' / 'best.ckpt'}",
        f"kto_pairs.fallback_checkpoint={tmp_path / 'sft' / 'last.ckpt'}",
        f"kto_pairs.out_dir={tmp_path / 'pairs'}", f"kto_pairs.report_dir={tmp_path / 'report'}",
        "kto_pairs.samples_per_prompt=2", "kto_pairs.batch_size=4", "kto_pairs.val_share=0.3",
        "kto_pairs.low_score_below=null", *presets, *overrides]))


def read_pairs(tmp_path: Path) -> pa.Table:
    return pq.read_table(tmp_path / "pairs" / "pairs.parquet")


def test_stage_writes_dataset_desirables_and_flagged_samples(tmp_path, setup):
    tok, train = setup
    summary = execute_stage("kto_pairs", config(tmp_path))
    table = read_pairs(tmp_path)
    assert table.schema == SCHEMA
    rows = table.to_pylist()
    dataset = [r for r in rows if r["preset"] == "dataset"]
    # One desirable per train conversation, prompt = everything before its last reply.
    assert len(dataset) == N_TRAIN and all(r["label"] and r["completion_ended"] for r in dataset)
    for r in dataset:
        conversation = train[r["dialogue_row"]]
        # The conversation up to its last reply, the oldest turns dropped to leave room for a reply.
        system = [m for m in conversation[:1] if m["role"] == "system"]
        turns = r["prompt"][len(system):]
        assert r["prompt"][:len(system)] == system and turns[0]["role"] == "user"
        assert turns == conversation[len(conversation) - 1 - len(turns):-1]
        assert r["completion"] == conversation[-1]["content"]
    sampled = [r for r in rows if r["preset"] != "dataset"]
    assert all(not r["label"] and any(r[f] for f in FAILURES) for r in sampled)
    assert {r["model_sha256"] for r in rows} == {file_sha256(tmp_path / "sft" / "best.ckpt")}
    assert {r["split"] for r in rows} == {"train", "val"}
    # A prompt keeps its split whatever the preset.
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["dialogue_row"], r["split"]) == r["split"]
    assert all(r["dialogue_row"] < N_TRAIN for r in rows)  # never a prompt of the SFT val split
    report = (tmp_path / "report" / "report.json").read_text(encoding="utf-8")
    import json

    data = json.loads(report)
    for name, count in (("loops", 5), ("canned", 4), ("tutorial", 3)):
        s = data["presets"][name]
        assert s["sampled"] == count and s["kept"] + s["turned_out_fine"] == count
        assert s["kept"] == sum(r["preset"] == name for r in rows)
        assert sum(s["finish_reasons"].values()) == count
    assert (tmp_path / "report" / "report.md").read_text(encoding="utf-8").startswith("# kto_pairs")
    assert json.loads((tmp_path / "report" / "throughput.json").read_text())["samples"] == 12
    assert summary.read["prompts from the sft train split"] == N_TRAIN
    # Replies that end on <|end|> are exactly the rows with completion_ended.
    assert all(r["completion_ended"] == (r["finish_reason"] in ("end", "dataset")) for r in rows)


def test_stage_is_deterministic(tmp_path, setup):
    execute_stage("kto_pairs", config(tmp_path))
    first = read_pairs(tmp_path)
    execute_stage("kto_pairs", config(tmp_path))
    assert read_pairs(tmp_path).equals(first)


def test_replies_no_detector_flags_are_dropped_and_counted(tmp_path, setup, monkeypatch):
    monkeypatch.setattr(stage_module, "detect_failures",
                        lambda *a, **k: {name: Detection(0.0, False) for name in FAILURES})
    summary = execute_stage("kto_pairs", config(tmp_path))
    assert set(read_pairs(tmp_path).column("preset").to_pylist()) == {"dataset"}
    assert summary.dropped["turned out fine loops"] == 5
    assert summary.dropped["turned out fine tutorial"] == 3


def test_low_scoring_dataset_replies_become_undesirable(tmp_path, setup):
    execute_stage("kto_pairs", config(tmp_path, "kto_pairs.low_score_below=6"))
    rows = read_pairs(tmp_path).to_pylist()
    low = sorted(r["dialogue_row"] for r in rows if r["preset"] == "low_score")
    assert low == [0, 1]
    assert all(not r["label"] for r in rows if r["preset"] == "low_score")
    assert sum(r["preset"] == "dataset" for r in rows) == N_TRAIN - 2  # unscored rows stay desirable


def test_max_prompts_keeps_a_seeded_subset_and_counts_the_rest(tmp_path, setup):
    summary = execute_stage("kto_pairs", config(tmp_path, "kto_pairs.max_prompts=5"))
    rows = read_pairs(tmp_path).to_pylist()
    kept = sorted(r["dialogue_row"] for r in rows if r["preset"] == "dataset")
    assert len(kept) == 5 and summary.dropped["prompts beyond kto_pairs.max_prompts"] == N_TRAIN - 5
    # the undesirables answer the same prompts, and the subset follows the seed
    assert {r["dialogue_row"] for r in rows if not r["label"]} <= set(kept)
    execute_stage("kto_pairs", config(tmp_path, "kto_pairs.max_prompts=5", "seed=7"))
    assert sorted(r["dialogue_row"] for r in read_pairs(tmp_path).to_pylist() if r["preset"] == "dataset") != kept
    execute_stage("kto_pairs", config(tmp_path, f"kto_pairs.max_prompts={N_TRAIN}"))
    assert sum(r["preset"] == "dataset" for r in read_pairs(tmp_path).to_pylist()) == N_TRAIN


def test_a_prompt_that_cannot_fit_is_dropped_and_counted(tmp_path):
    tok = write_tokenizer(tmp_path / "tokenizer")
    write_chat_checkpoint(tmp_path / "sft" / "best.ckpt", tok, tmp_path / "tokenizer")
    long = [{"role": "user", "content": "tea " * 40}, {"role": "assistant", "content": "ok."}]
    write_dialogues(tmp_path / "dialogues" / "dialogues.parquet", extra_train=[long])
    summary = execute_stage("kto_pairs", config(tmp_path))
    assert summary.dropped["prompt too long for the context"] == 1
    assert N_TRAIN not in read_pairs(tmp_path).column("dialogue_row").to_pylist()


def test_fallback_checkpoint_and_clear_errors(tmp_path, setup):
    tok, _ = setup
    (tmp_path / "sft" / "best.ckpt").rename(tmp_path / "sft" / "last.ckpt")
    execute_stage("kto_pairs", config(tmp_path))
    assert read_pairs(tmp_path).column("model_sha256")[0].as_py() == file_sha256(tmp_path / "sft" / "last.ckpt")
    (tmp_path / "sft" / "last.ckpt").unlink()
    with pytest.raises(KtoPairsError, match="no SFT model at kto_pairs.checkpoint="):
        execute_stage("kto_pairs", config(tmp_path))
    write_chat_checkpoint(tmp_path / "sft" / "best.ckpt", tok, tmp_path / "tokenizer", chat=False)
    with pytest.raises(KtoPairsError, match="not a chat model"):
        execute_stage("kto_pairs", config(tmp_path))


def test_bad_preset_values_name_the_key(tmp_path):
    from src.config import ConfigError

    with pytest.raises(ConfigError, match="kto_pairs.presets.loops.temperature"):
        config(tmp_path, "kto_pairs.presets.loops.temperature=-1")
    with pytest.raises(ConfigError, match="kto_pairs.detectors.canned_max_overlap"):
        config(tmp_path, "kto_pairs.detectors.canned_max_overlap=2")
    with pytest.raises(ConfigError, match="kto_pairs.max_prompts"):
        config(tmp_path, "kto_pairs.max_prompts=0")


def test_val_split_is_stable_and_roughly_the_share():
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(2000)]
    splits = [val_split(p, 0.1) for p in prompts]
    assert splits == [val_split(p, 0.1) for p in prompts]
    assert 0.07 < splits.count("val") / len(splits) < 0.13
    assert all(val_split(p, 0.0) == "train" for p in prompts[:50])


def test_choose_prompts_cycles_through_every_prompt_before_repeating():
    order = choose_prompts(5, count=23, samples_per_prompt=2, seed=1, preset_index=0)
    assert len(order) == 12
    assert sorted(order[:5]) == list(range(5)) and sorted(order[5:10]) == list(range(5))


def test_sample_preset_draws_count_replies_and_halves_rows_on_out_of_memory(setup, monkeypatch):
    from types import SimpleNamespace

    tok, train = setup
    torch.manual_seed(0)
    engine = Engine(GPT({**TINY_MODEL, "vocab_size": tok.vocab_size}).eval(), tok, precision="fp32")
    prompts = [PromptRow(i, c[:-1], [tok.special_tokens["<|user|>"], 5, 6], c[-1]["content"], None, "train")
               for i, c in enumerate(train[:4])]
    preset = SimpleNamespace(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=8, count=7)
    calls = []
    original = engine.generate

    def flaky(prompt_ids, *args, **kwargs):
        calls.append(len(prompt_ids) * kwargs["num_samples"])
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(prompt_ids, *args, **kwargs)

    monkeypatch.setattr(engine, "generate", flaky)
    result = sample_preset(engine, prompts, "loops", preset, preset_index=0, samples_per_prompt=3,
                           batch_size=12, seed=0)
    assert len(result.replies) == 7
    assert calls[0] == 9 and result.rows_per_call == 6 and max(calls[1:]) <= 6
    assert all(len(r.tokens) <= 8 and r.limit == 8 for r in result.replies)
    assert all(r.ended == (r.finish_reason == "end") for r in result.replies)
