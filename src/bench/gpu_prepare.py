"""Prepare, on the CPU, what the GPU suite (python -m src.bench.gpu_suite) needs on the device and the
device cannot make or fetch: `.device/` (gitignored), which the device call carries.

    python -m src.bench.gpu_prepare [--skip-wheels] [--skip-tokens] [--corpus DIR]

- `.device/wheels/`: wheels for Python 3.12 of what the suite imports that the device image lacks:
  omegaconf and its grammar runtime antlr4-python3-runtime 4.9.3 (published as an sdist only: built
  into a wheel here once), plus hydra-core for `python -m src.run` there (the suite itself never
  imports Hydra). The versions are those of this environment, so the device runs what was tested.
- `.device/classics_bpe16k/`: corpus_ru (../shared/data/corpus_ru) through the project's own stages,
  as `+experiment=classics_bpe16k` with the corpus read from the folder (scrape_librus local, as
  ru_classics_cpu does): scrape_librus, clean_librus, train_tokenizer (SentencePiece BPE 16k),
  tokenize. Intermediates go to outputs/gpu_prepare/ (gitignored, not carried); the token files
  (meta.json, train.bin, val.bin, report.json) and the tokenizer (tokenizer/) to `.device/`.
Prints the sizes: the working tree plus `.device/` must stay under the device call's 64 MiB.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from src.paths import PROJECT_ROOT, shared_data_dir

DEVICE_DIR = PROJECT_ROOT / ".device"
WHEELS = DEVICE_DIR / "wheels"
TOKENS = DEVICE_DIR / "classics_bpe16k"
WORK = PROJECT_ROOT / "outputs" / "gpu_prepare"
CARRY_LIMIT = 64 * 2**20
# (distribution, pip name): wheels the suite or `src.run` needs on the device that its image lacks.
PACKAGES = [("omegaconf", "omegaconf"), ("hydra-core", "hydra-core")]
SDIST_ONLY = [("antlr4-python3-runtime", "antlr4-python3-runtime")]
STAGES = ["scrape_librus", "clean_librus", "train_tokenizer", "tokenize"]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def download_wheels(target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    pinned = [f"{pip_name}=={version(dist)}" for dist, pip_name in PACKAGES]
    pip("download", "--quiet", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "py",
        "--no-deps", "-d", str(target), *pinned)
    for dist, pip_name in SDIST_ONLY:  # pure Python: a wheel built here runs on any CPython 3
        pip("wheel", "--quiet", "--no-deps", "-w", str(target), f"{pip_name}=={version(dist)}")


def stage_overrides(corpus: Path, work: Path, tokenizer_dir: Path, tokens_dir: Path) -> list[str]:
    return ["+experiment=classics_bpe16k", "tracking.enabled=false",
            "scrape_librus.source=local", f"scrape_librus.local_dir={corpus}", "scrape_librus.local_suffixes=[.txt]",
            f"scrape_librus.out_dir={work}/raw", f"scrape_librus.report_dir={work}/reports/scrape_librus",
            f"scrape_librus.cache_dir={work}/cache", f"clean_librus.raw_dir={work}/raw",
            f"clean_librus.output={work}/clean/librus.parquet", f"clean_librus.report_dir={work}/reports/clean_librus",
            "tokenizer.corpora=[literature]", f"tokenizer.literature_path={work}/clean/librus.parquet",
            f"tokenizer.out_dir={tokenizer_dir}", f"tokenize.out_dir={tokens_dir}"]


def make_tokens(corpus: Path, work: Path, target: Path) -> None:
    """The four stages through `python -m src.run` (each as DVC would run it), then the tokenizer is
    copied in beside the token files: the tokenize stage replaces its whole output folder."""
    if not corpus.is_dir():
        raise SystemExit(f"error: {corpus}: corpus folder not found (--corpus, or HOMUNCULUS_SHARED_DATA)")
    overrides = stage_overrides(corpus, work, work / "tokenizer", work / "tokens")
    for stage in STAGES:
        print(f"== {stage}", flush=True)
        subprocess.run([sys.executable, "-m", "src.run", stage, *overrides], check=True, cwd=PROJECT_ROOT)
    with tempfile.TemporaryDirectory(dir=DEVICE_DIR) as tmp:
        staging = Path(tmp) / "tokens"
        shutil.copytree(work / "tokens", staging)
        shutil.copytree(work / "tokenizer", staging / "tokenizer")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def tree_size() -> int:
    """Bytes of the files git tracks (what the device call sends besides the carried paths)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    return sum((PROJECT_ROOT / f).stat().st_size for f in files.decode().split("\0")
               if f and (PROJECT_ROOT / f).is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-wheels", action="store_true")
    ap.add_argument("--skip-tokens", action="store_true")
    ap.add_argument("--corpus", type=Path, default=None, help="default: ../shared/data/corpus_ru")
    args = ap.parse_args(argv)
    DEVICE_DIR.mkdir(exist_ok=True)
    if not args.skip_wheels:
        download_wheels(WHEELS)
    if not args.skip_tokens:
        make_tokens((args.corpus or shared_data_dir() / "corpus_ru").resolve(), WORK, TOKENS)
    sizes = {"working tree (git ls-files)": tree_size(), str(WHEELS.relative_to(PROJECT_ROOT)): size(WHEELS),
             str(TOKENS.relative_to(PROJECT_ROOT)): size(TOKENS)}
    for name, n in sizes.items():
        print(f"{n / 2**20:8.2f} MiB  {name}")
    total = sum(sizes.values())
    print(f"{total / 2**20:8.2f} MiB  in all, of the device call's {CARRY_LIMIT / 2**20:.0f} MiB")
    for wheel in sorted(WHEELS.glob("*.whl")):
        print(f"  {wheel.name}")
    if total >= CARRY_LIMIT:
        print("error: too large to carry", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
