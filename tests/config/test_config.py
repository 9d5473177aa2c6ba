"""params.yaml is the composition of conf/, the schema catches typos, dvc.yaml matches the pipeline."""

from __future__ import annotations

import re
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from src.config import ConfigError, compose, composed_params_text, flatten, load_config
from src.paths import CONF_DIR, PARAMS_FILE, PROJECT_ROOT
from src.pipeline import STAGES


def test_params_yaml_matches_composed_conf() -> None:
    assert PARAMS_FILE.read_text(encoding="utf-8") == composed_params_text(), (
        "params.yaml is stale: run `python -m src.config compose`"
    )


def test_params_yaml_validates_against_schema() -> None:
    cfg = load_config()
    assert cfg.model.n_layer >= 1


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model\.n_layr"):
        load_config({"model": {"n_layr": 3}})


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model\.n_layer"):
        load_config({"model": {"n_layer": "three"}})


def test_typo_in_a_yaml_file_fails_at_start(tmp_path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("tracking:\n  enabeld: false\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"params\.yaml.*tracking\.enabeld"):
        load_config(bad)


def test_override_changes_composition() -> None:
    cfg = compose(["model.n_layer=7", "seed=3"])
    assert cfg.model.n_layer == 7 and cfg.seed == 3


def test_every_conf_group_option_composes() -> None:
    """Each YAML in each group composes and validates (catches a preset with a typo)."""
    for group_dir in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "experiment"):
        for option in sorted(group_dir.glob("*.yaml")):
            load_config(compose([f"{group_dir.name}={option.stem}"]))


def test_every_experiment_composes() -> None:
    for option in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        load_config(compose([f"+experiment={option.stem}"]))


def test_config_is_read_only() -> None:
    cfg = load_config()
    from omegaconf.errors import ReadonlyConfigError

    with pytest.raises(ReadonlyConfigError):
        cfg.seed = 1


def test_flatten_nests_with_dots() -> None:
    assert flatten(OmegaConf.create({"a": {"b": 1, "c": {"d": "x"}}})) == {"a.b": 1, "a.c.d": "x"}


def test_dvc_yaml_params_match_pipeline_sections() -> None:
    dvc = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    assert set(dvc["stages"]) == set(STAGES)
    for name, stage in STAGES.items():
        assert set(dvc["stages"][name]["params"]) == set(stage.sections), name
        assert dvc["stages"][name]["cmd"] == f"python -m stages.{name}"
        assert (PROJECT_ROOT / "stages" / f"{name}.py").exists()


def test_dvc_hydra_integration_is_enabled() -> None:
    text = (PROJECT_ROOT / ".dvc" / "config").read_text(encoding="utf-8")
    assert "[hydra]" in text and "enabled = true" in text


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"tokenize\.bogus"):
        compose(["tokenize.bogus=1"])
    with pytest.raises(ConfigError, match=r"no_such_preset"):
        compose(["model=no_such_preset"])


def test_entry_point_reports_input_errors_in_one_line(tmp_path, capsys) -> None:
    from src.run import main

    status = main(["tokenize", "tracking.enabled=false", f"tokenize.tokenizer_dir={tmp_path}",
                   f"tokenize.out_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert status == 1
    assert f"error: tokenize: {tmp_path}/tokenizer.json: not found" in err
    assert "Traceback" not in err
    assert main(["tokenize", "tokenize.bogus=1"]) == 2
    assert "tokenize.bogus" in capsys.readouterr().err


@pytest.mark.parametrize("override,key", [
    ("model.n_layer=-2", "model.n_layer"), ("model.n_layer=0", "model.n_layer"),
    ("model.n_head=0", "model.n_head"), ("model.n_head=3", "model.n_head"),
    ("model.dropout=1.0", "model.dropout"), ("model.pos_emb=alibi", "model.pos_emb"),
    ("model.block_size=0", "model.block_size"), ("model.vocab_size=-1", "model.vocab_size"),
    ("trainer.devices=0", "trainer.devices"), ("trainer.num_nodes=0", "trainer.num_nodes"),
    ("trainer.strategy=dpp", "trainer.strategy"), ("trainer.precision=bf16", "trainer.precision"),
    ("pretrain.lr=-1e-3", "pretrain.lr"), ("pretrain.max_steps=0", "pretrain.max_steps"),
    ("pretrain.beta2=1.0", "pretrain.beta2"), ("pretrain.optimizer=sgd", "pretrain.optimizer"),
    ("pretrain.warmup_steps=500", "pretrain.warmup_steps"),
    ("pretrain.micro_batch_size=0", "pretrain.micro_batch_size"),
])
def test_out_of_range_values_are_named_at_load(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"bad config value '{re.escape(key)}': .*got "):
        load_config(compose([override]))


def test_rope_needs_an_even_head_size() -> None:
    with pytest.raises(ConfigError, match=r"'model\.n_head': pos_emb=rope needs an even head size"):
        load_config(compose(["model.pos_emb=rope", "model.n_embd=96", "model.n_head=32"]))
    load_config(compose(["model.pos_emb=rope", "model.n_embd=96", "model.n_head=24"]))


def test_hydra_errors_become_one_line() -> None:
    for override, expected in (("model.n_layr=3", "bad config key 'model.n_layr'"),
                               ("model=nope", "Could not find 'model/nope' (options: "),
                               ("model.n_layer=[1", "no viable alternative")):
        with pytest.raises(ConfigError) as info:
            compose([override])
        assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("argv,expected", [
    (["model.n_layr=3"], "bad config key 'model.n_layr'"),
    (["model.n_head=3"], "bad config value 'model.n_head'"),
    # A bad value in the second point of a sweep stops the sweep before its first point trains.
    (["-m", "model.n_layer=1,-2"], "bad config value 'model.n_layer': must be >= 1, got -2"),
    (["--multirun", "+experiment=cpu_smoke", "model.n_head=2,3"], "bad config value 'model.n_head'"),
])
def test_train_entry_reports_config_errors_like_run(argv, expected, monkeypatch, capsys) -> None:
    """`python -m src.train` ends a bad override as `src.run` does: one line, status 2."""
    from src import run, train

    monkeypatch.setattr(sys, "argv", ["src.train", *argv])
    with pytest.raises(SystemExit) as info:
        train.main()
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: pretrain: ") and expected in err
    if argv[0] != "-m" and argv[0] != "--multirun":
        assert run.main(["pretrain", *argv]) == 2
        assert capsys.readouterr().err == err


def test_sweep_points_cover_every_value_once() -> None:
    from src.train import sweep_points

    points = sweep_points(["-m", "--config-name", "config", "+experiment=cpu_smoke", "model.n_layer=1,2,3",
                           "pretrain.lr=0.1,0.2", "hydra.sweep.dir=x"])
    assert points == [
        ["+experiment=cpu_smoke", "model.n_layer=1", "pretrain.lr=0.1"],
        ["+experiment=cpu_smoke", "model.n_layer=2", "pretrain.lr=0.1"],
        ["+experiment=cpu_smoke", "model.n_layer=3", "pretrain.lr=0.1"],
        ["+experiment=cpu_smoke", "model.n_layer=1", "pretrain.lr=0.2"],
    ]
