"""params.yaml is the composition of conf/, the schema catches typos, dvc.yaml matches the pipeline."""

from __future__ import annotations

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
