"""Evaluation of generated text: detectors shared by SFT monitoring, the eval stage and KTO."""
