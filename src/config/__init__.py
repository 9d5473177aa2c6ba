"""Configuration: `conf/` (Hydra) is the source of truth; `params.yaml` is its DVC-tracked composition.

- `compose(overrides)` composes `conf/` exactly as DVC's Hydra integration does.
- `load_config(source)` validates a composed config (or params.yaml) against the typed schema, so a
  typo or a wrong type fails at start with the full key named.
- `python -m src.config compose [OVERRIDES...]` rewrites params.yaml from `conf/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.atomic_io import write_text_atomic
from src.config.schema import RootConfig
from src.errors import InputError
from src.paths import CONF_DIR, PARAMS_FILE


class ConfigError(InputError, ValueError):
    """A config that does not match the schema; the message names the source and the key."""


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose `conf/` with Hydra and resolve interpolations (what `dvc exp run` writes)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"conf/ with overrides {list(overrides or [])}: {hydra_reason(exc)}") from None
    OmegaConf.resolve(cfg)
    return cfg


def hydra_reason(exc: BaseException) -> str:
    """Hydra's multi-line error as one line: the key at fault, or the missing option and the choices."""
    cause: BaseException | None = exc
    while cause is not None:
        key = getattr(cause, "full_key", None)
        if key:
            return f"bad config key '{key}': {str(getattr(cause, 'msg', None) or cause).splitlines()[0]}"
        cause = cause.__cause__ or cause.__context__
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    options = getattr(exc, "options", None)
    return f"{first} (options: {', '.join(options)})" if options else first


def composed_params_text(overrides: list[str] | None = None) -> str:
    """The exact text DVC's Hydra integration dumps into params.yaml."""
    return OmegaConf.to_yaml(compose(overrides))


def load_config(source: DictConfig | dict | str | Path | None = None, origin: str = "config") -> DictConfig:
    """Validate a config against `RootConfig`; `None` reads params.yaml. `origin` names an in-memory
    config in error messages (a file is named by its path).

    The result is a typed DictConfig: assigning a wrong type or reading an unknown key raises.
    """
    try:
        if source is None or isinstance(source, (str, Path)):
            path = Path(source) if source is not None else PARAMS_FILE
            origin = str(path)
            if not path.exists():
                raise ConfigError(
                    f"{path}: not found; run `python -m src.config compose` to write it from conf/"
                )
            loaded = OmegaConf.load(path)
        else:
            loaded = source if isinstance(source, DictConfig) else OmegaConf.create(source)
        # Hydra's own bookkeeping node is not part of the schema.
        if isinstance(loaded, DictConfig) and "hydra" in loaded:
            loaded = OmegaConf.masked_copy(loaded, [k for k in loaded if k != "hydra"])
        merged = OmegaConf.merge(OmegaConf.structured(RootConfig), loaded)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        reason = str(getattr(exc, "msg", None) or exc).splitlines()[0]
        raise ConfigError(f"{origin}: bad config key '{key}': {reason}") from None
    assert isinstance(merged, DictConfig)
    problems = value_problems(merged)
    if problems:
        key, message = problems[0]
        raise ConfigError(f"{origin}: bad config value '{key}': {message}")
    OmegaConf.set_readonly(merged, True)
    return merged


def value_problems(cfg: DictConfig) -> list[tuple[str, str]]:
    """(full key, problem) for every value a section's schema rejects (its `problems` method)."""
    out: list[tuple[str, str]] = []
    for name, section_type in get_type_hints(RootConfig).items():
        check = getattr(section_type, "problems", None)
        if check is None:
            continue
        values = OmegaConf.to_container(cfg[name], resolve=True)
        out.extend((f"{name}.{key}", message) for key, message in check(values))
    return out


def flatten(cfg: DictConfig | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`, for MLflow params."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def write_params(overrides: list[str] | None = None, path: Path = PARAMS_FILE) -> Path:
    text = composed_params_text(overrides)
    load_config(OmegaConf.create(text))  # never write a params.yaml the stages would reject
    write_text_atomic(path, text)  # dvc and the stages never read half a params.yaml
    return path
