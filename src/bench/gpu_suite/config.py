"""Compose `conf/` without Hydra, for machines that have omegaconf but not hydra-core (the GPU device).

Understands the three override forms the benchmarks use and nothing else, so a config it cannot build
fails loudly instead of differing from Hydra's quietly:

- `~group`          drop a group of conf/config.yaml's defaults list (its section keeps the schema's defaults)
- `group=option`    pick conf/<group>/<option>.yaml for a group of the defaults list
- `a.b.c=value`     set a key; the value is read as YAML (`true`, `3`, `1e-3`, `[a, b]`, `text`)

The result is the same tree Hydra composes for these overrides (tests/bench/test_gpu_suite.py
compares the two wherever Hydra is installed); pass it to `src.config.load_config` to type-check it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError
from src.paths import CONF_DIR


def _defaults(conf_dir: Path) -> tuple[dict[str, str], dict]:
    root = yaml.safe_load((conf_dir / "config.yaml").read_text(encoding="utf-8"))
    groups: dict[str, str] = {}
    for entry in root.get("defaults", []):
        if isinstance(entry, dict):
            ((group, option),) = entry.items()
            groups[str(group)] = str(option)
        elif entry != "_self_":
            raise ConfigError(f"{conf_dir / 'config.yaml'}: defaults entry {entry!r} is not 'group: option'")
    return groups, {k: v for k, v in root.items() if k != "defaults"}


def compose_lite(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> DictConfig:
    """conf/config.yaml with `overrides` applied, interpolations resolved (see the module docstring)."""
    groups, own = _defaults(conf_dir)
    values: list[tuple[str, object]] = []
    for text in overrides or []:
        if text.startswith("~"):
            if text[1:] not in groups:
                raise ConfigError(f"override {text!r}: no group {text[1:]!r} in conf/config.yaml's defaults")
            del groups[text[1:]]
            continue
        key, sep, raw = text.partition("=")
        if not sep or not key or key[0] in "+~" or "@" in key:
            raise ConfigError(f"override {text!r}: only '~group', 'group=option' and 'key=value' are "
                              "understood without Hydra")
        if "." not in key and key in groups:
            if not (conf_dir / key / f"{raw}.yaml").is_file():
                raise ConfigError(f"override {text!r}: no file conf/{key}/{raw}.yaml")
            groups[key] = raw
        else:
            values.append((key, yaml.safe_load(raw) if raw else ""))
    tree = {group: OmegaConf.load(conf_dir / group / f"{option}.yaml") for group, option in groups.items()}
    cfg = OmegaConf.merge(OmegaConf.create(tree), OmegaConf.create(own))  # _self_ comes last
    for key, value in values:
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    OmegaConf.resolve(cfg)
    assert isinstance(cfg, DictConfig)
    return cfg
