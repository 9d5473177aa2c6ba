"""DVC stage `eval`: reads params.yaml and runs the stage function (see src/pipeline.py)."""

from src.stage import run_stage

if __name__ == "__main__":
    run_stage("eval")
