"""Chat with a model in the terminal (or through a pipe: `printf 'hi\\n/quit\\n' | python -m src.chat M`).

    python -m src.chat CHECKPOINT_OR_EXPORT [--mode auto|chat|base] [--system TEXT] [--temp 0.8] ...

chat mode renders the conversation with the chat template (src/generation/chat_template.py) and
stops a reply at <|end|>; base mode continues each line you type as plain text. auto = chat when
the checkpoint/export is marked as chat-tuned, else base. Slash commands: see HELP.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import torch

from src.generation import chat_template
from src.generation.engine import Engine, TokenEvent
from src.generation.loading import LoadError, load_for_generation
from src.generation.precision import PRECISIONS
from src.generation.sampling import SamplingParams

HELP = """commands:
  /temp X         sampling temperature (0 = greedy)
  /top_p X        nucleus sampling mass (1 = off)
  /top_k N        sample among the N likeliest tokens (0 = off)
  /max_tokens N   reply length limit
  /rep_penalty X  repetition penalty (1 = off)
  /system TEXT    set the system message (empty: none); the conversation is kept
  /reset          forget the conversation
  /template       show exactly what the model is fed next: text with special tokens, and ids
  /help           this list
  /quit           leave"""

# Slash command -> (SamplingParams field, type).
SETTINGS = {"/temp": ("temperature", float), "/top_p": ("top_p", float), "/top_k": ("top_k", int),
            "/max_tokens": ("max_new_tokens", int), "/rep_penalty": ("repetition_penalty", float)}


@dataclass
class ChatSession:
    engine: Engine
    chat: bool
    params: SamplingParams
    system: str = ""
    seed: int | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    last_ids: list[int] = field(default_factory=list)

    @property
    def tokenizer(self):  # noqa: ANN201 - any object with the tokenizer interface
        return self.engine.tokenizer

    def messages(self, user_text: str | None = None) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs += self.history
        if user_text is not None:
            msgs.append({"role": "user", "content": user_text})
        return msgs

    def prompt_ids(self, user_text: str | None) -> tuple[list[int], int]:
        """Ids to feed, and how many old turns were dropped so the reply fits the context."""
        if not self.chat:
            return self.tokenizer.encode(user_text or ""), 0
        budget = self.engine.block_size - self.params.max_new_tokens
        dropped = 0
        while True:
            ids = chat_template.encode(self.tokenizer, self.messages(user_text))
            if len(ids) <= budget or not self.history:
                return ids, dropped
            # Drop the oldest exchange (a user turn and the reply to it), keep the system message.
            del self.history[:2]
            dropped += 1

    def handle(self, line: str) -> bool:
        """Process one input line; False when the session should end."""
        line = line.rstrip("\n")
        if line.startswith("/"):
            return self.command(line)
        if not line.strip():
            return True
        self.reply(line)
        return True

    def command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name == "/quit":
            return False
        if name == "/help":
            self.say(HELP)
        elif name in SETTINGS:
            key, kind = SETTINGS[name]
            try:
                self.params = self.params.with_(**{key: kind(arg)})
            except ValueError as exc:
                self.say(f"{name}: {exc}")
                return True
            self.say(f"{key} = {getattr(self.params, key)}")
        elif name == "/system":
            if not self.chat:
                self.say("/system: a base model has no system message (use a chat model or --mode chat)")
            else:
                self.system = arg
                self.say(f"system message {'set' if arg else 'cleared'}")
        elif name == "/reset":
            self.history.clear()
            self.say("conversation cleared")
        elif name == "/template":
            self.show_template()
        else:
            self.say(f"unknown command {name!r}; /help lists them")
        return True

    def show_template(self) -> None:
        if self.chat:
            ids, _ = self.prompt_ids(None)
            self.say("(the conversation so far plus the generation prompt; your next message goes "
                     "before the final <|assistant|>)")
        else:
            ids = self.last_ids
            self.say("(base mode: the model is fed exactly the line you type, nothing added; "
                     "this was the last one)")
        self.say(chat_template.show_tokens(self.tokenizer, ids))

    def reply(self, text: str) -> None:
        if self.chat:
            try:
                chat_template.validate([{"role": "user", "content": text}])
            except ValueError as exc:
                self.say(f"not sent: {exc}")
                return
        ids, dropped = self.prompt_ids(text)
        if dropped:
            self.say(f"(dropped the {dropped} oldest exchange(s) to fit the context)")
        if not ids:
            return
        self.last_ids = ids
        self.out.write("bot> " if self.chat else "... ")
        self.out.flush()
        stop_ids = None if self.chat else [self.tokenizer.eot_id]
        start = time.perf_counter()
        tokens: list[int] = []
        printer = StreamPrinter(self.tokenizer, self.out)
        for event in self._events(ids, stop_ids):
            if event.finish_reason != "stop_token":
                tokens.append(event.token)
                printer.push(tokens)
        elapsed = time.perf_counter() - start
        printer.finish(tokens)
        rate = len(tokens) / elapsed if elapsed > 0 else 0.0
        self.say(f"[{len(tokens)} tokens, {elapsed * 1e3:.0f} ms, {rate:.1f} tok/s]")
        if self.chat:
            self.history += [{"role": "user", "content": text},
                             {"role": "assistant", "content": self.tokenizer.decode(tokens)}]

    def _events(self, ids: list[int], stop_ids: list[int] | None) -> Iterator[TokenEvent]:
        return self.engine.iter_events([ids], self.params, stop_ids=stop_ids, seed=self.seed)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class StreamPrinter:
    """Prints a growing token list as text, holding back an incomplete trailing character (a
    byte-fallback token sequence decodes to U+FFFD until its last byte arrives)."""

    def __init__(self, tokenizer, out: TextIO) -> None:  # noqa: ANN001
        self.tokenizer, self.out, self.printed = tokenizer, out, ""

    def push(self, tokens: list[int]) -> None:
        text = self.tokenizer.decode(tokens)
        if text.endswith("\ufffd") or not text.startswith(self.printed):
            return
        self.out.write(text[len(self.printed):])
        self.out.flush()
        self.printed = text

    def finish(self, tokens: list[int]) -> None:
        text = self.tokenizer.decode(tokens)
        self.out.write((text[len(self.printed):] if text.startswith(self.printed) else "") + "\n")
        self.out.flush()


def read_lines(stream: TextIO, interactive: bool, out: TextIO) -> Iterator[str]:
    """Input lines; with a terminal, show a prompt; through a pipe, echo each line so the
    transcript reads like a session."""
    while True:
        if interactive:
            try:
                line = input("you> ")
            except EOFError:
                return
        else:
            line = stream.readline()
            if not line:
                return
            out.write(f"you> {line if line.endswith(chr(10)) else line + chr(10)}")
        yield line


def generation_defaults() -> Any:
    """The `generation` section of params.yaml (the pipeline's composed config), or the schema's
    defaults when there is none (e.g. an export used away from the project)."""
    from src.config import ConfigError, load_config
    from src.config.sections.generation import GenerationConfig

    try:
        return load_config().generation
    except ConfigError:
        return GenerationConfig()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = generation_defaults()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a Lightning .ckpt or an export directory (python -m src.export)")
    ap.add_argument("--mode", choices=("auto", "chat", "base"), default="auto")
    ap.add_argument("--system", default=defaults.system)
    ap.add_argument("--temp", type=float, default=defaults.temperature)
    ap.add_argument("--top-k", type=int, default=defaults.top_k)
    ap.add_argument("--top-p", type=float, default=defaults.top_p)
    ap.add_argument("--rep-penalty", type=float, default=defaults.repetition_penalty)
    ap.add_argument("--max-tokens", type=int, default=defaults.max_new_tokens)
    ap.add_argument("--seed", type=int, default=None, help="fixed seed: every reply is reproducible")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default=defaults.precision, choices=("auto", *PRECISIONS))
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads (0 = torch's default; 1 is faster on a busy machine)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        loaded = load_for_generation(args.model)
        params = SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p,
                                repetition_penalty=args.rep_penalty, max_new_tokens=args.max_tokens)
    except (LoadError, ValueError) as exc:
        sys.exit(f"chat: {exc}")
    chat = loaded.chat if args.mode == "auto" else args.mode == "chat"
    engine = Engine(loaded.model, loaded.tokenizer, precision=args.precision, device=args.device)
    session = ChatSession(engine, chat, params, system=args.system, seed=args.seed, out=sys.stdout)
    cfg = loaded.model.cfg
    session.say(f"model {loaded.source}: {loaded.model.num_params() / 1e6:.2f}M parameters, "
                f"{cfg['n_layer']} layers, context {cfg['block_size']}, vocab {cfg['vocab_size']}; "
                f"{'chat' if chat else 'base (plain continuation)'} mode; {engine.device} "
                f"{engine.precision}; loaded in {(time.perf_counter() - start) * 1e3:.0f} ms. /help lists commands")
    for line in read_lines(sys.stdin, sys.stdin.isatty(), sys.stdout):
        if not session.handle(line):
            break


if __name__ == "__main__":
    main()
