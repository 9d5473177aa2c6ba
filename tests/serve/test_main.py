from __future__ import annotations

from pathlib import Path

import pytest

from src.serve.__main__ import default_name, main


def test_a_missing_model_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: serve: .*nothing\.ckpt: no such checkpoint"):
        main([str(tmp_path / "nothing.ckpt"), "--port", "0"])


def test_a_bad_setting_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: serve: serve.max_queue must be >= 0"):
        main([str(tmp_path / "nothing.ckpt"), "--max-queue", "-1"])


def test_default_names(tmp_path):
    (tmp_path / "my_export").mkdir()
    assert default_name(tmp_path / "my_export") == "my_export"
    assert default_name(Path("data/models/sft/last.ckpt")) == "sft-last"
