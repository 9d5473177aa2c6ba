"""Chat with a model in the terminal (or through a pipe: `printf 'hi\\n/quit\\n' | python -m src.chat M`).

    python -m src.chat CHECKPOINT_OR_EXPORT [--mode auto|chat|base] [--system TEXT] [--temp 0.8] ...

chat mode renders the conversation with the chat template (src/generation/chat_template.py) and
stops a reply at <|end|> (or any other special token); base mode continues each line you type as
plain text. auto = chat when the checkpoint/export is marked as chat-tuned, else base. What you type
goes through the corpus normalizer first (ё→е, quotes, dashes, ellipsis), as the training text did.
A share of the context (--reply-share) is kept for the reply; older messages that no longer fit
beside it are dropped, and the session says so. Slash commands: see HELP.

    python -m src.chat [MODEL] --rerank RERANKER_DIR [--candidates markov|lm|both] [--n 4096] [--markov DIR]

answers with the best of N candidates picked by a reranker (src/chat_rerank.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import torch

from src import chat_rerank
from src.config.sections.generation import GenerationConfig
from src.generation import chat_template
from src.generation.engine import Engine, TokenEvent
from src.generation.loading import LoadError, load_for_generation
from src.generation.precision import PRECISIONS
from src.generation.sampling import SamplingParams
from src.tokenizers.base import SPECIAL_TOKENS

HELP = """commands:
  /temp X         sampling temperature (0 = greedy)
  /top_p X        nucleus sampling mass (1 = off)
  /top_k N        sample among the N likeliest tokens (0 = off)
  /max_tokens N   reply length limit (in chat also at most the context's reply share)
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
    # Share of the context kept for the reply (GenerationConfig.reply_share).
    reply_share: float = GenerationConfig.reply_share
    # The training text's normalize section (LoadedModel.normalize; None: the defaults).
    normalize: dict[str, Any] | None = None

    @property
    def tokenizer(self):  # noqa: ANN201 - any object with the tokenizer interface
        return self.engine.tokenizer

    def messages(self, user_text: str | None = None) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs += self.history
        if user_text is not None:
            msgs.append({"role": "user", "content": user_text})
        return msgs

    def fit(self, user_text: str | None) -> chat_template.FittedPrompt:
        """The chat prompt for the conversation plus `user_text`, cropped to leave the reply its
        share of the context (ContextError when the newest message alone does not fit)."""
        return chat_template.fit_to_context(self.tokenizer, self.messages(user_text), self.engine.block_size,
                                            self.params.max_new_tokens, self.reply_share)

    def base_prompt(self, text: str) -> tuple[list[int], int]:
        """Base mode: the line's ids, keeping its end when the reply's share would not fit; and how
        many tokens were cut from its start."""
        ids = self.tokenizer.encode(text)
        keep = self.engine.block_size - chat_template.reply_reserve(
            self.engine.block_size, self.params.max_new_tokens, self.reply_share)
        return ids[-keep:], max(0, len(ids) - keep)

    def prepare(self, role: str, text: str) -> str | None:
        """Typed text normalized as the training text was; None (after saying why) when it holds a
        special token. The same check and message for user and system text."""
        text = chat_template.normalize_user_text(text, self.normalize)
        if self.chat:
            try:
                chat_template.check_content(role, text)
            except ValueError as exc:
                self.say(f"refused: {exc}")
                return None
        return text

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
                text = self.prepare("system", arg)
                if text is not None:
                    self.system = text
                    self.say(f"system message {'set' if text else 'cleared'}")
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
            try:
                fitted = self.fit(None)
            except chat_template.ContextError as exc:
                self.say(f"/template: {exc}")
                return
            ids = fitted.ids
            self.say("(the conversation so far plus the generation prompt; your next message goes "
                     "before the final <|assistant|>)")
            if fitted.dropped:
                self.say(f"({fitted.dropped} older message(s) no longer fit beside the reply's share "
                         "of the context and are left out)")
        else:
            ids = self.last_ids
            self.say("(base mode: the model is fed exactly the line you type, nothing added; "
                     "this was the last one)")
        self.say(chat_template.show_tokens(self.tokenizer, ids))

    def reply(self, text: str) -> None:
        prepared = self.prepare("user", text)
        if prepared is None:
            return
        params = self.params
        if self.chat:
            try:
                fitted = self.fit(prepared)
            except chat_template.ContextError as exc:
                self.say(f"not sent: {exc}")
                return
            ids, params = fitted.ids, params.with_(max_new_tokens=fitted.max_new_tokens)
            if fitted.dropped:
                # Dropped for good: the next prompt would have to leave them out as well.
                del self.history[:fitted.dropped]
                self.say(f"(dropped the {fitted.dropped} oldest message(s) of the conversation: the "
                         f"context holds {self.engine.block_size} tokens and {fitted.max_new_tokens} "
                         "are kept for the reply)")
            stop_ids, stop_strings = chat_template.special_ids(self.tokenizer), SPECIAL_TOKENS
        else:
            ids, cut = self.base_prompt(prepared)
            if cut:
                self.say(f"(the first {cut} tokens of the line do not fit beside the reply and are left out)")
            stop_ids, stop_strings = [self.tokenizer.eot_id], ()
        if not ids:
            return
        self.last_ids = ids
        self.out.write("bot> " if self.chat else "... ")
        self.out.flush()
        start = time.perf_counter()
        tokens: list[int] = []
        printer = StreamPrinter(self.tokenizer, self.out)
        for event in self._events(ids, params, stop_ids, stop_strings):
            if event.finish_reason != "stop_token":
                tokens.append(event.token)
                printer.push(tokens)
        elapsed = time.perf_counter() - start
        printer.finish(tokens)
        rate = len(tokens) / elapsed if elapsed > 0 else 0.0
        self.say(f"[{len(tokens)} tokens, {elapsed * 1e3:.0f} ms, {rate:.1f} tok/s]")
        if self.chat:
            self.history += [{"role": "user", "content": prepared},
                             {"role": "assistant", "content": chat_template.clean_reply(self.tokenizer.decode(tokens))}]

    def _events(self, ids: list[int], params: SamplingParams, stop_ids: list[int],
                stop_strings: tuple[str, ...]) -> Iterator[TokenEvent]:
        return self.engine.iter_events([ids], params, stop_ids=stop_ids, stop_strings=stop_strings,
                                       seed=self.seed)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def without_partial_tag(text: str) -> str:
    """`text` less a trailing start of a special-token string ("<", "<|us"), which may still grow
    into a tag that must not be shown."""
    for k in range(min(len(text), max(map(len, SPECIAL_TOKENS)) - 1), 0, -1):
        if any(t.startswith(text[-k:]) for t in SPECIAL_TOKENS):
            return text[:-k]
    return text


class StreamPrinter:
    """Prints a growing token list as text, holding back an incomplete trailing character (a
    byte-fallback token sequence decodes to U+FFFD until its last byte arrives) and anything from a
    special-token string on (spelled out of ordinary pieces, it ends the reply)."""

    def __init__(self, tokenizer, out: TextIO) -> None:  # noqa: ANN001
        self.tokenizer, self.out, self.printed = tokenizer, out, ""

    def push(self, tokens: list[int]) -> None:
        text = without_partial_tag(chat_template.clean_reply(self.tokenizer.decode(tokens)))
        if text.endswith("\ufffd") or not text.startswith(self.printed):
            return
        self.out.write(text[len(self.printed):])
        self.out.flush()
        self.printed = text

    def finish(self, tokens: list[int]) -> None:
        text = chat_template.clean_reply(self.tokenizer.decode(tokens))
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
    ap.add_argument("model", nargs="?", default=None,
                    help="a Lightning .ckpt or an export directory (python -m src.export); "
                         "not needed with --rerank --candidates markov")
    ap.add_argument("--mode", choices=("auto", "chat", "base"), default="auto")
    ap.add_argument("--system", default=defaults.system)
    ap.add_argument("--temp", type=float, default=defaults.temperature)
    ap.add_argument("--top-k", type=int, default=defaults.top_k)
    ap.add_argument("--top-p", type=float, default=defaults.top_p)
    ap.add_argument("--rep-penalty", type=float, default=defaults.repetition_penalty)
    ap.add_argument("--max-tokens", type=int, default=defaults.max_new_tokens)
    ap.add_argument("--reply-share", type=float, default=defaults.reply_share,
                    help="share of the context kept for the reply in chat (0 < X < 1); older messages "
                         "that do not fit beside it are dropped")
    ap.add_argument("--seed", type=int, default=None, help="fixed seed: every reply is reproducible")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default=defaults.precision, choices=("auto", *PRECISIONS))
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads (0 = torch's default; 1 is faster on a busy machine)")
    chat_rerank.add_arguments(ap)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rerank:
        run_reranked(args)
        return
    if args.model is None:
        sys.exit("chat: a MODEL is needed (a checkpoint or export), or --rerank with --candidates markov")
    start = time.perf_counter()
    try:
        loaded = load_for_generation(args.model)
        params = SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p,
                                repetition_penalty=args.rep_penalty, max_new_tokens=args.max_tokens)
        chat_template.reply_reserve(loaded.model.block_size, params.max_new_tokens, args.reply_share)
    except (LoadError, ValueError) as exc:
        sys.exit(f"chat: {exc}")
    chat = loaded.chat if args.mode == "auto" else args.mode == "chat"
    system = chat_template.normalize_user_text(args.system, loaded.normalize)
    if chat:
        try:
            chat_template.check_content("system", system)
        except ValueError as exc:
            sys.exit(f"chat: --system refused: {exc}")
    engine = Engine(loaded.model, loaded.tokenizer, precision=args.precision, device=args.device)
    session = ChatSession(engine, chat, params, system=system, seed=args.seed, out=sys.stdout,
                          reply_share=args.reply_share, normalize=loaded.normalize)
    cfg = loaded.model.cfg
    session.say(f"model {loaded.source}: {loaded.model.num_params() / 1e6:.2f}M parameters, "
                f"{cfg['n_layer']} layers, context {cfg['block_size']}, vocab {cfg['vocab_size']}; "
                f"{'chat' if chat else 'base (plain continuation)'} mode; {engine.device} "
                f"{engine.precision}; loaded in {(time.perf_counter() - start) * 1e3:.0f} ms. /help lists commands")
    if chat:
        reserve = chat_template.reply_reserve(engine.block_size, params.max_new_tokens, args.reply_share)
        session.say(f"replies up to {reserve} tokens ({args.reply_share:g} of the context, at most "
                    f"--max-tokens {params.max_new_tokens}); older messages give way to keep that room")
    for line in read_lines(sys.stdin, sys.stdin.isatty(), sys.stdout):
        if not session.handle(line):
            break



def run_reranked(args: argparse.Namespace) -> None:
    """--rerank: replies are the best of --n candidates (src/chat_rerank.py); the model, when the
    candidates include the LM's, is loaded here as for plain chat."""
    from src.generation.rerank import LMWriter

    lm, normalize = None, None
    if args.candidates in ("lm", "both"):
        if args.model is None:
            sys.exit(f"chat: --candidates {args.candidates} needs a MODEL to sample from")
        try:
            loaded = load_for_generation(args.model)
            params = SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p,
                                    repetition_penalty=args.rep_penalty, max_new_tokens=args.max_tokens)
        except (LoadError, ValueError) as exc:
            sys.exit(f"chat: {exc}")
        engine = Engine(loaded.model, loaded.tokenizer, precision=args.precision, device=args.device)
        chat = loaded.chat if args.mode == "auto" else args.mode == "chat"
        system = chat_template.normalize_user_text(args.system, loaded.normalize) if chat else ""
        lm = LMWriter(engine, params, chat=chat, system=system, reply_share=args.reply_share,
                      batch=args.lm_batch)
        normalize = loaded.normalize
    chat_rerank.run(args, lm, normalize, read_lines(sys.stdin, sys.stdin.isatty(), sys.stdout), sys.stdout)


if __name__ == "__main__":
    main()
