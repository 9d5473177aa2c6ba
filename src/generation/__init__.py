"""Generation: the KV-cache engine, sampling, weight formats for decoding, the chat template, and
loading checkpoints/exports (see each module's docstring)."""

from src.generation.engine import Completion, Engine, TokenEvent, generate_no_cache
from src.generation.sampling import GREEDY, SamplingParams

__all__ = ["GREEDY", "Completion", "Engine", "SamplingParams", "TokenEvent", "generate_no_cache"]
