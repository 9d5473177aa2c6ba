from __future__ import annotations

from src.bench.kto_pairs import main


def test_random_weight_benchmark_reports_every_preset(capsys):
    main(["--preset", "tiny", "--count", "4", "--batch-size", "4", "--samples-per-prompt", "2",
          "--max-new-tokens", "6", "--prompt-len", "4,12", "--device", "cpu", "--precision", "fp32"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    for name in ("loops", "canned", "tutorial"):
        assert rows[name][1] == "4"
        assert int(rows[name][2]) <= 4 * 6
    assert rows["all"][1] == "12"
    assert "3,000 replies take" in out
