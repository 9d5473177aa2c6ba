"""The chat REPL's reranked mode: `python -m src.chat [MODEL] --rerank RERANKER_DIR ...`.

Every reply is the best of `--n` candidates (src/generation/rerank.py): lines of the Markov writer
(`--markov`, default the markov stage's model), samples of the language model MODEL, or both, each
scored by the reranker against the conversation so far. Each reply shows how long it took and where
the time went; /top shows the best candidates of the last turn with their scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from src.generation import chat_template
from src.generation.rerank import SOURCES, Conversation, RerankedReply, Reranking

HELP = """commands (reranked mode):
  /top [K]        the K best candidates of the last turn with their scores (default 10)
  /n N            candidates per turn
  /candidates X   where candidates come from: markov, lm or both
  /reset          forget the conversation
  /help           this list
  /quit           leave"""


@dataclass
class RerankedChat:
    conversation: Conversation
    out: TextIO = field(default_factory=lambda: sys.stdout)
    normalize: dict[str, Any] | None = None

    @property
    def reranking(self) -> Reranking:
        return self.conversation.reranking

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def handle(self, line: str) -> bool:
        """Process one input line; False when the session should end."""
        line = line.rstrip("\n")
        if line.startswith("/"):
            return self.command(line)
        if line.strip():
            self.reply(line)
        return True

    def command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        r = self.reranking
        if name == "/quit":
            return False
        if name == "/help":
            self.say(HELP)
        elif name == "/top":
            self.show_top(arg)
        elif name == "/n":
            if not arg.isdigit() or int(arg) < 1:
                self.say(f"/n: a whole number >= 1, got {arg!r}")
            else:
                r.n = int(arg)
                self.say(f"n = {r.n}")
        elif name == "/candidates":
            previous = r.source
            try:
                r.source = arg
                r.__post_init__()
            except ValueError as exc:
                r.source = previous
                self.say(f"/candidates: {exc}")
            else:
                self.say(f"candidates = {arg}")
        elif name == "/reset":
            self.conversation.lines.clear()
            self.conversation.last = None
            self.say("conversation cleared")
        else:
            self.say(f"unknown command {name!r}; /help lists them")
        return True

    def show_top(self, arg: str) -> None:
        last = self.conversation.last
        if last is None:
            self.say("/top: no reply yet")
            return
        k = int(arg) if arg.isdigit() and int(arg) > 0 else 10
        self.say(f"best {min(k, len(last.ranked))} of {len(last.ranked)} candidates (score, source, line):")
        for i, s in enumerate(last.ranked[:k], 1):
            seed = f" <{s.seed}>" if s.seed else ""
            self.say(f"{i:>4}. {s.score:.4f} {s.source}{seed}  {s.text}")

    def reply(self, text: str) -> None:
        text = chat_template.normalize_user_text(text, self.normalize)
        try:
            chat_template.check_content("user", text)
        except ValueError as exc:
            self.say(f"refused: {exc}")
            return
        try:
            result = self.conversation.say(text)
        except chat_template.ContextError as exc:
            self.conversation.lines.pop()
            self.say(f"not sent: {exc}")
            return
        if result.best is None:
            self.conversation.lines.pop()
            self.say(f"(no candidate to choose from: {describe(result)}; the line was not kept)")
            return
        self.say(f"bot> {result.best.text}")
        self.say(f"[{describe(result)}]")


def describe(r: RerankedReply) -> str:
    made = ", ".join(f"{k} {v}" for k, v in r.made.items())
    phases = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in r.timings.items() if k != "total")
    dropped = ("; left out " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in r.dropped.items())
               if r.dropped else "") + "".join(f"; {note}" for note in r.notes)
    return f"best of {len(r.ranked)} ({made}{dropped}) in {r.timings['total'] * 1e3:.0f} ms: {phases}"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("reranked mode (best of N candidates, see src/chat_rerank.py)")
    g.add_argument("--rerank", metavar="RERANKER_DIR", default=None,
                   help="a reranker export (the reranker stage's data/models/reranker/model)")
    g.add_argument("--candidates", choices=SOURCES, default="markov")
    g.add_argument("--n", type=int, default=4096, help="candidates per turn")
    g.add_argument("--markov", metavar="PATH", default=None,
                   help="a Markov model directory (default: the markov stage's markov.out_dir)")
    g.add_argument("--context-lines", type=int, default=6,
                   help="newest lines of the conversation the reranker sees (0 = all)")
    g.add_argument("--lm-batch", type=int, default=256, help="LM samples per engine call")
    g.add_argument("--any-script", action="store_true",
                   help="score candidates in any script (default: only those in the script of your last line)")


def markov_defaults() -> Any:
    from src.config import ConfigError, load_config
    from src.config.sections.markov import MarkovConfig

    try:
        return load_config().markov
    except ConfigError:
        return MarkovConfig()


def build_reranking(args: argparse.Namespace, lm: Any | None) -> Reranking:
    """The Reranking the arguments describe (`lm`: an LMWriter or None). InputError/ValueError name
    what is wrong."""
    from src.generation.markov import MarkovModel
    from src.generation.rerank import MarkovWriter
    from src.generation.reranker import load_reranker
    from src.paths import resolve

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    markov = None
    if args.candidates in ("markov", "both"):
        defaults = markov_defaults()
        g = defaults.generate
        markov = MarkovWriter(MarkovModel.load(resolve(args.markov or defaults.out_dir)), g.seeded_share,
                              g.seed_lines, g.max_pieces, g.rounds)
    scorer = load_reranker(args.rerank, device=args.device)
    return Reranking(scorer, markov=markov, lm=lm, source=args.candidates, n=args.n,
                     context_lines=args.context_lines, match_script=not args.any_script)


def run(args: argparse.Namespace, lm: Any | None, normalize: dict[str, Any] | None,
        lines: Any, out: TextIO) -> None:
    """The REPL loop of reranked mode over input `lines`."""
    from src.errors import InputError

    start = time.perf_counter()
    try:
        reranking = build_reranking(args, lm)
    except (InputError, ValueError) as exc:
        sys.exit(f"chat: {exc}")
    session = RerankedChat(Conversation(reranking, seed=args.seed), out=out, normalize=normalize)
    parts = [f"reranked mode: best of {reranking.n} candidates from {reranking.source}"]
    if reranking.markov is not None:
        meta = reranking.markov.model.meta
        parts.append(f"Markov order {meta['order']} ({meta['lines']:,} lines)")
    parts.append(f"reranker {args.rerank}")
    session.say(", ".join(parts) + f"; loaded in {(time.perf_counter() - start) * 1e3:.0f} ms. /help lists commands")
    for line in lines:
        if not session.handle(line):
            break
