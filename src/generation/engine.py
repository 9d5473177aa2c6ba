"""KV-cache text generation for a GPT: prefill once, then one cheap step per new token.

How a call runs (`Engine.generate`):

1. Prompts of different lengths are left-padded to the longest (P tokens), so every row writes its
   next key/value at the same cache slot and one decode step serves the whole batch. Each row's
   position ids start at 0 at its first real token; a per-row `valid` mask hides the padding slots.
2. Prefill: one forward over the P prompt tokens fills a preallocated cache [B, H, max_len, D] per
   layer. With `num_samples` > 1 each prompt is prefilled once, then its cache rows are copied to
   its samples' rows.
3. Decode: sample a token per row, stream it, check the row's stop conditions, feed it back. A row
   that has stopped keeps riding along (its outputs are ignored) until every row has stopped.

Decode steps run eagerly over the filled part of the cache (CPU), or, on CUDA, over a static cache
of block_size slots as a captured CUDA graph (optionally compiled by torch.compile first, so that Inductor
fuses the small element-wise kernels the graph would otherwise replay one by one).

`generate_no_cache` is the reference: the plain forward pass over the whole sequence every step.
At temperature 0 the engine must produce exactly its tokens (tests/generation/test_engine.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from src.generation.precision import convert_for_decoding, default_precision
from src.generation.sampling import SamplingParams, sample
from src.models.gpt import GPT, KVCache

PAD_ID = 0  # what fills left padding; never attended to, so any valid id works


@dataclass
class TokenEvent:
    """One new token of one row. With finish_reason "stop_token" the token is the stop token
    itself, which is not part of the completion."""

    row: int
    token: int
    finish_reason: str | None = None


@dataclass
class Completion:
    prompt_index: int
    sample_index: int
    tokens: list[int] = field(default_factory=list)
    text: str | None = None
    # stop_token | stop_string | max_tokens | context (the model's block_size is full)
    finish_reason: str = ""
    prompt_tokens: int = 0
    # Tokens dropped from the prompt's start because it did not fit the context.
    cropped_prompt_tokens: int = 0


def tokenizer_stop_ids(tokenizer: object | None) -> list[int]:
    """End-of-text and end-of-turn ids of a tokenizer (whichever it has)."""
    if tokenizer is None:
        return []
    specials = getattr(tokenizer, "special_tokens", {}) or {}
    return sorted({specials[t] for t in ("<|endoftext|>", "<|end|>") if t in specials})


class _StaticStep:
    """One decode step for a fixed batch size over a static cache of block_size slots, with
    static input tensors (token, position, slot, attention mask) updated in place before each call.

    Fixed shapes and addresses are what a CUDA graph needs: on CUDA the step is captured once and
    replayed. Attention covers the whole cache under the mask, so the shapes never change. Without
    capture (CPU) it runs the same computation eagerly, which is how the tests check it.
    """

    def __init__(self, model: GPT, batch: int, compile_model: bool, cache_dtype: torch.dtype | None) -> None:
        self.model = model
        device = model.transformer.wte.weight.device
        self.max_len = model.block_size
        self.cache = model.allocate_cache(batch, self.max_len, dtype=cache_dtype)
        self.idx = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.mask = torch.zeros(batch, 1, 1, self.max_len, dtype=torch.bool, device=device)
        self._step = model.forward_cached
        if compile_model:
            self._step = torch.compile(model.forward_cached, dynamic=False, fullgraph=True)
        self.graph: torch.cuda.CUDAGraph | None = None

    def _run(self) -> Tensor:
        return self._step(self.idx, self.pos, self.cache, self.slot, self.max_len, self.mask)

    def capture(self) -> None:
        # Warm up (and compile) on a side stream, as CUDA graph capture requires; the warm-up
        # writes into the cache at slot 0, which every prefill overwrites.
        self.mask[..., 0] = True
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            try:
                self._run()
            except Exception as exc:  # Inductor can fail on an unusual setup; eager still works
                warnings.warn(f"torch.compile of the decode step failed ({type(exc).__name__}: "
                              f"{exc}); capturing the uncompiled step", stacklevel=2)
                self._step = self.model.forward_cached
            for _ in range(2):
                self._run()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._run()

    def __call__(self, tokens: Tensor, positions: Tensor, slot: int) -> Tensor:
        self.idx.copy_(tokens[:, None])
        self.pos.copy_(positions[:, None])
        self.slot.fill_(slot)
        self.mask[..., slot] = True
        if self.graph is None:
            return self._run()
        self.graph.replay()
        return self.logits


class Engine:
    """Generation with a KV cache for one model (and optionally its tokenizer).

    precision: fp32 | fp16 | bf16 | int8 / int4 (CPU weight-only) | "auto" (bf16 on GPU, int8 on
    CPU) | None (use `model` as given, no copy; e.g. for samples during training).
    static_cache: decode over a fixed block_size cache (default on CUDA, where it is captured as a
    CUDA graph unless cuda_graphs=False); compile_model: torch.compile that step (default: when
    graphs are used).
    """

    def __init__(self, model: GPT, tokenizer: object | None = None, *, precision: str | None = "auto",
                 device: str | torch.device | None = None, cuda_graphs: bool = True,
                 compile_model: bool | None = None, static_cache: bool | None = None) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if precision == "auto":
            precision = default_precision(self.device)
        self.precision = precision or "as-given"
        if precision is None:
            self.model = model  # may be a model in training: iter_events restores its mode
        else:
            self.model = convert_for_decoding(model, precision, self.device).eval()
        self.tokenizer = tokenizer
        self.stop_ids = tokenizer_stop_ids(tokenizer)
        # Special tokens are left out of the repetition penalty: the template repeats <|end|> and the
        # role tags every turn, and penalizing them would make the model stop less.
        self.unpenalized_ids = sorted(set((getattr(tokenizer, "special_tokens", None) or {}).values()))
        # CPU attention kernels are several times faster in fp32 than in bf16, and the cache is
        # small next to the weights, so on CPU it stays fp32 whatever the weights are.
        self.cache_dtype = torch.float32 if self.device.type == "cpu" else None
        # Static cache (fixed shapes, masked attention over all block_size slots): the default on
        # CUDA, where steps are replayed as graphs; the CPU is faster attending to the filled part.
        self.static_cache = self.device.type == "cuda" if static_cache is None else static_cache
        self.use_cuda_graphs = cuda_graphs and self.static_cache and self.device.type == "cuda"
        # Compiling lets Inductor fuse the step's small kernels before the graph captures them;
        # on CPU it measured no faster than eager here, so it is a CUDA default only.
        self.compile_model = self.use_cuda_graphs if compile_model is None else compile_model
        self._static_steps: dict[int, _StaticStep] = {}

    @property
    def block_size(self) -> int:
        return self.model.block_size

    # --- public API --------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams = SamplingParams(), *,
                 num_samples: int = 1, stop_ids: Sequence[int] | None = None,
                 stop_strings: Sequence[str] = (), seed: int | None = None,
                 on_token: Callable[[TokenEvent], None] | None = None) -> list[Completion]:
        """Complete each prompt (token ids) `num_samples` times; returns prompt-major completions
        (prompt 0's samples first). `stop_ids` default to the tokenizer's end-of-text / end-of-turn
        ids; `stop_strings` need a tokenizer and cut the text at the first match."""
        events = self.iter_events(prompts, params, num_samples=num_samples, stop_ids=stop_ids,
                                  stop_strings=stop_strings, seed=seed)
        while True:
            try:
                event = next(events)
            except StopIteration as done:
                return done.value
            if on_token is not None:
                on_token(event)

    def stream(self, prompt: Sequence[int], params: SamplingParams = SamplingParams(), **kwargs) -> Iterator[int]:
        """Token ids of one completion of one prompt, as they are made (stop tokens left out)."""
        for event in self.iter_events([prompt], params, **kwargs):
            if event.finish_reason != "stop_token":
                yield event.token

    @torch.inference_mode()
    def iter_events(self, prompts: Sequence[Sequence[int]], params: SamplingParams = SamplingParams(), *,
                    num_samples: int = 1, stop_ids: Sequence[int] | None = None,
                    stop_strings: Sequence[str] = (), seed: int | None = None,
                    ) -> Iterator[TokenEvent]:
        """The generator behind `generate`: yields a TokenEvent per new token and returns the
        list of Completions."""
        if not prompts:
            return []
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1 (got {num_samples})")
        if stop_strings and self.tokenizer is None:
            raise ValueError("stop_strings need an Engine with a tokenizer")
        stops = set(self.stop_ids if stop_ids is None else stop_ids)
        n = num_samples
        cropped = [self._crop(list(p), i) for i, p in enumerate(prompts)]
        completions = [Completion(prompt_index=i, sample_index=s, prompt_tokens=len(p),
                                  cropped_prompt_tokens=len(prompts[i]) - len(p))
                       for i, p in enumerate(cropped) for s in range(n)]
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)

        was_training = self.model.training
        self.model.eval()  # no dropout while generating
        try:
            yield from self._decode(cropped, completions, params, n, stops, stop_strings, generator)
        finally:
            self.model.train(was_training)
        if self.tokenizer is not None:
            for c in completions:
                if c.text is None:
                    c.text = self.tokenizer.decode(c.tokens)
        return completions

    def _decode(self, prompts: list[list[int]], completions: list[Completion], params: SamplingParams,
                n: int, stops: set[int], stop_strings: Sequence[str],
                generator: torch.Generator | None) -> Iterator[TokenEvent]:
        state = _DecodeState.prefill(self, prompts, n, params)
        logits = state.first_logits
        while True:
            tokens = sample(logits, params, state.seen, generator)
            for row, token in enumerate(tokens.tolist()):
                c = completions[row]
                if c.finish_reason:
                    continue
                if token in stops:
                    c.finish_reason = "stop_token"
                    yield TokenEvent(row, token, c.finish_reason)
                    continue
                c.tokens.append(token)
                if stop_strings and self._cut_at_stop_string(c, stop_strings):
                    c.finish_reason = "stop_string"
                elif len(c.tokens) >= params.max_new_tokens:
                    c.finish_reason = "max_tokens"
                elif state.context_full(row, len(c.tokens)):
                    c.finish_reason = "context"
                yield TokenEvent(row, token, c.finish_reason or None)
            if all(c.finish_reason for c in completions):
                return
            logits = state.step(tokens)

    # --- helpers -----------------------------------------------------------------------------------
    def _crop(self, prompt: list[int], index: int) -> list[int]:
        if not prompt:
            raise ValueError(f"prompt {index} is empty; start it with at least one token "
                             "(e.g. the end-of-text id)")
        return prompt[-self.block_size:]

    def _cut_at_stop_string(self, c: Completion, stop_strings: Sequence[str]) -> bool:
        text = self.tokenizer.decode(c.tokens)
        hits = [text.find(s) for s in stop_strings if s and s in text]
        if not hits:
            return False
        c.text = text[:min(hits)]
        return True

    def static_step(self, batch: int) -> _StaticStep:
        if batch not in self._static_steps:
            step = _StaticStep(self.model, batch, self.compile_model, self.cache_dtype)
            if self.use_cuda_graphs:
                step.capture()
            self._static_steps[batch] = step
        return self._static_steps[batch]


class _DecodeState:
    """The cache and per-row bookkeeping of one `generate` call."""

    def __init__(self, engine: Engine, cache: KVCache, valid: Tensor, lengths: Tensor,
                 prompt_len: int, max_len: int, padded: bool, seen: Tensor | None,
                 static: _StaticStep | None) -> None:
        self.engine, self.model = engine, engine.model
        self.cache, self.valid = cache, valid
        self.row_lengths, self.next_pos = lengths.tolist(), lengths.clone()
        self.prompt_len, self.max_len, self.padded = prompt_len, max_len, padded
        self.seen, self.static = seen, static
        self.slot = prompt_len
        self.first_logits: Tensor
        self.unpenalized: Tensor | None = None  # token ids never marked as seen

    @classmethod
    def prefill(cls, engine: Engine, prompts: list[list[int]], n: int, params: SamplingParams) -> _DecodeState:
        model, device = engine.model, engine.device
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        P = int(lengths.max())
        batch = len(prompts) * n
        pad = P - lengths
        idx = torch.full((len(prompts), P), PAD_ID, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            idx[i, P - len(p):] = torch.tensor(p, dtype=torch.long, device=device)
        columns = torch.arange(P, device=device)
        positions = (columns[None] - pad[:, None]).clamp(min=0)

        static = engine.static_step(batch) if engine.static_cache else None
        if static is not None:
            cache, max_len = static.cache, static.max_len
        else:
            # Enough slots for every row to reach max_new_tokens or its own full context (a row
            # with k padding slots may use k slots beyond block_size).
            max_len = max(P, min(P + params.max_new_tokens - 1, model.block_size + int(pad.max())))
            cache = model.allocate_cache(batch, max_len, dtype=engine.cache_dtype)
        # valid[row, slot]: the slot holds a real token of that row (not left padding).
        valid = torch.arange(max_len, device=device)[None] >= pad[:, None]
        padded = bool((pad > 0).any())
        mask = None
        if padded:
            causal = torch.ones(P, P, dtype=torch.bool, device=device).tril()
            # Padding queries attend to themselves only, so no softmax row is empty (NaN).
            mask = (causal & valid[:, None, :P]) | torch.eye(P, dtype=torch.bool, device=device)
            mask = mask[:, None]
        # Prefill each prompt once into rows 0, n, 2n, ... (a strided view of the cache).
        prefill_cache = KVCache([k[::n] for k in cache.k], [v[::n] for v in cache.v])
        logits = model.forward_cached(idx, positions, prefill_cache, columns, P, mask)
        if n > 1:
            for i in range(len(prompts)):
                cache.copy_row(i * n, slice(i * n + 1, (i + 1) * n), P)
            logits = logits.repeat_interleave(n, dim=0)
            valid = valid.repeat_interleave(n, dim=0)
            lengths = lengths.repeat_interleave(n)
        seen = None
        if params.repetition_penalty != 1.0:
            # Count only real prompt tokens (valid slots), so the padding id is not "seen".
            counts = torch.zeros(len(prompts), logits.shape[-1], dtype=torch.int32, device=device)
            counts.scatter_add_(1, idx, valid[::n, :P].to(torch.int32))
            seen = (counts > 0).repeat_interleave(n, dim=0)
            exempt = torch.tensor([i for i in engine.unpenalized_ids if i < seen.shape[-1]],
                                  dtype=torch.long, device=device)
            seen[:, exempt] = False
        if static is not None:
            static.mask.copy_(valid[:, None, None, :] & (torch.arange(max_len, device=device) < P))
        state = cls(engine, cache, valid, lengths, P, max_len, padded, seen, static)
        state.first_logits = logits
        state.unpenalized = exempt if seen is not None else None
        return state

    def context_full(self, row: int, generated: int) -> bool:
        """Whether `row` cannot take another token: its context (prompt + generated) would exceed
        block_size, or the cache has no slot left (with a static cache, as on CUDA, it holds block_size
        slots shared by all rows, so a left-padded row can stop a little early)."""
        return self.row_lengths[row] + generated > self.model.block_size or self.slot >= self.max_len

    def step(self, tokens: Tensor) -> Tensor:
        """Feed each row's newest token (at the next slot); logits [B, V] for the token after."""
        if self.seen is not None:
            self.seen.scatter_(1, tokens[:, None], True)
            self.seen[:, self.unpenalized] = False
        slot = self.slot
        if self.static is not None:
            logits = self.static(tokens, self.next_pos, slot)
        else:
            kv_len = slot + 1
            mask = self.valid[:, None, None, :kv_len] if self.padded else None
            slots = torch.tensor([slot], device=tokens.device)
            logits = self.model.forward_cached(tokens[:, None], self.next_pos[:, None], self.cache, slots,
                                               kv_len, mask)
        self.slot += 1
        # Finished rows ride along; keep their positions inside the position table.
        self.next_pos = (self.next_pos + 1).clamp_(max=self.model.block_size - 1)
        return logits


@torch.inference_mode()
def generate_no_cache(model: GPT, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
    """Greedy tokens by re-running the whole sequence each step: slow, simple, the reference."""
    device = next(model.parameters()).device
    idx = torch.tensor([list(prompt)], dtype=torch.long, device=device)
    out: list[int] = []
    for _ in range(max_new_tokens):
        if idx.shape[1] > model.block_size:
            break
        logits, _ = model(idx[:, -model.block_size:])
        token = int(logits[0, -1].float().argmax())
        out.append(token)
        idx = torch.cat([idx, torch.tensor([[token]], device=device)], dim=1)
    return out
