"""Generation: the KV-cache engine (engine.py), sampling (sampling.py), weight formats for decoding
(precision.py), the chat template, loading checkpoints/exports, and the Markov writer (markov.py).

Nothing is imported here: import the module you need (`from src.generation.engine import Engine`),
so that a user of the Markov writer does not load torch and the model code with it."""
