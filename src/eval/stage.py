"""Stage `eval`: how good is every model the pipeline made, in numbers comparable across experiments.

For each model of `eval.models` (pretrain, SFT, KTO: best.ckpt, else last.ckpt; a missing one is
skipped with a line saying so and listed in results["absent"]):
- language modelling: loss and bits per byte per held-out corpus, and the unigram baseline by the
  same code (src/eval/lm_metrics.py);
- generation: replies to the fixed prompt set (src/eval/sets/prompts.jsonl) through the batched
  engine, with the `generation` section's sampling and a fixed seed; the chat models answer the
  conversation, the pretrained model continues the last user message as plain text; the reply
  figures of src/eval/generation_metrics.py, every reply in samples.jsonl;
- context retention probes (src/eval/probes.py), the reranker on held-out samples and best-of-N
  against plain sampling (src/eval/reranker_eval.py), latency at batch 1 (src/eval/latency.py);
  each can be switched off (`eval.<part>.enabled`);
- pipeline facts from the stages' own reports (src/eval/collect.py).

Outputs (eval.out_dir): results.json (everything; the report card's input), metrics.json (DVC
metrics), plots/*.csv (DVC plots), samples.jsonl, report.md and report.html (src/eval/report_card.py).
Everything but the latency section is a function of the inputs and the config; latency is wall-clock
time and lives only there and in the run's timings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.atomic_io import write_json_atomic, write_text_atomic
from src.errors import InputError
from src.eval.collect import collect
from src.eval.eval_outputs import metrics_view, write_plots
from src.eval.generation_metrics import reply_metrics
from src.eval.lm_metrics import heldout, score_model, unigram_baseline
from src.generation import chat_template
from src.generation.loading import LoadedModel, LoadError, load_for_generation
from src.generation.sampling import SamplingParams
from src.paths import display_path, resolve
from src.stage import StageRun

CHECKPOINTS = ("best.ckpt", "last.ckpt")


def find_checkpoint(folder: str) -> tuple[Path | None, str]:
    """(the checkpoint to evaluate, "") or (None, why there is none)."""
    if not folder:
        return None, "not configured (eval.models entry is empty)"
    directory = resolve(folder)
    for name in CHECKPOINTS:
        if (directory / name).is_file():
            return directory / name, ""
    return None, f"{display_path(directory)}/best.ckpt not found (stage switched off or not run yet?)"


def load_models(e: DictConfig, results: dict[str, Any], run: StageRun) -> dict[str, LoadedModel]:
    loaded: dict[str, LoadedModel] = {}
    for name, folder in OmegaConf.to_container(e.models).items():
        path, reason = find_checkpoint(folder)
        entry: dict[str, Any] = {"present": False, "path": display_path(path or folder), "reason": reason}
        if path is not None:
            try:
                loaded[name] = load_for_generation(path)
                entry.update(present=True, parameters=sum(p.numel() for p in loaded[name].model.parameters()),
                             chat=loaded[name].chat)
            except LoadError as exc:
                entry["reason"] = f"not loadable: {exc}"
        results["models"][name] = entry
        if not entry["present"]:
            absent(results, run, name, entry["reason"])
        else:
            run.summary.add("read", "models")
    return loaded


def absent(results: dict[str, Any], run: StageRun, part: str, reason: str) -> None:
    """A part left out: one line on stderr (the summary's notes), listed in results["absent"]."""
    line = f"{part}: {reason}"
    results["absent"].append(line)
    run.summary.notes.append(f"skipped {line}")
    run.summary.add("dropped", "absent_parts")


# --- generation --------------------------------------------------------------------------------------
def prompt_ids(loaded: LoadedModel, messages: Sequence[Mapping[str, str]], max_new_tokens: int,
               reply_share: float) -> tuple[list[int], str]:
    """(prompt ids, the text the reply answers). Chat models: the conversation through the chat
    template, fitted to the context; other models: the last user message as plain text after an
    end-of-text id, its oldest tokens dropped to leave room for the reply."""
    tok, block = loaded.tokenizer, loaded.model.block_size
    settings = loaded.normalize
    normalized = [{"role": m["role"], "content": chat_template.normalize_user_text(m["content"], settings)}
                  for m in messages]
    last_user = next((m["content"] for m in reversed(normalized) if m["role"] == "user"), "")
    if loaded.chat:
        fitted = chat_template.fit_to_context(tok, normalized, block, max_new_tokens, reply_share)
        return fitted.ids, last_user
    keep = block - chat_template.reply_reserve(block, max_new_tokens, reply_share)
    ids = [tok.eot_id] + list(tok.encode(last_user))
    return ids[-keep:], last_user


def generate_replies(loaded: LoadedModel, prompts: Sequence[Mapping[str, Any]], params: SamplingParams, *,
                     seed: int, batch_size: int, reply_share: float, precision: str) -> tuple[list[dict[str, Any]], int]:
    """One reply per prompt (prompt i in batch b sampled with seed `seed + b`), as rows of
    samples.jsonl, and the number of prompts that did not fit the context."""
    from src.generation.engine import Engine

    tok = loaded.tokenizer
    engine = Engine(loaded.model, tok, precision=precision, static_cache=False, cuda_graphs=False,
                    compile_model=False)
    todo, rows, too_long = [], [], 0
    for p in prompts:
        try:
            ids, answered = prompt_ids(loaded, p["messages"], params.max_new_tokens, reply_share)
        except chat_template.ContextError:
            too_long += 1
            continue
        todo.append((p, ids, answered))
    end_id = (tok.special_tokens or {}).get(chat_template.END) if loaded.chat else tok.eot_id
    stop_ids = chat_template.special_ids(tok) if loaded.chat else None
    for b, start in enumerate(range(0, len(todo), batch_size)):
        batch = todo[start:start + batch_size]
        stopped_on: dict[int, int] = {}

        def on_token(event: Any, stopped_on: dict[int, int] = stopped_on) -> None:
            if event.finish_reason == "stop_token":
                stopped_on[event.row] = event.token

        completions = engine.generate([ids for _, ids, _ in batch], params, stop_ids=stop_ids, seed=seed + b,
                                      on_token=on_token)
        for i, ((p, _, answered), c) in enumerate(zip(batch, completions, strict=True)):
            rows.append({"id": p["id"], "language": p.get("language"), "prompt": answered,
                         "reply": chat_template.clean_reply(c.text or ""), "tokens": c.tokens,
                         "finish_reason": c.finish_reason, "ended": stopped_on.get(i) == end_id})
    return rows, too_long


def sampling(cfg: DictConfig, max_new_tokens: int) -> SamplingParams:
    """The generation section's sampling settings, one reply budget: the same for every part."""
    g = cfg.generation
    return SamplingParams(temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                          repetition_penalty=g.repetition_penalty, max_new_tokens=max_new_tokens)


def generation_part(e: DictConfig, cfg: DictConfig, loaded: Mapping[str, LoadedModel], prompts: list[dict[str, Any]],
                    results: dict[str, Any], run: StageRun) -> list[dict[str, Any]]:
    """results["generation"], ["samples"], series["reply_lengths"]; returns the samples.jsonl rows."""
    from src.eval.detectors import detect_failures

    params = sampling(cfg, e.generation.max_new_tokens)
    thresholds = OmegaConf.to_container(e.generation.detectors)
    samples: list[dict[str, Any]] = []
    by_prompt: dict[str, dict[str, str]] = {}
    for name, model in loaded.items():
        rows, too_long = generate_replies(model, prompts, params, seed=cfg.seed, batch_size=e.generation.batch_size,
                                          reply_share=cfg.generation.reply_share, precision=e.precision)
        if too_long:
            run.summary.add("dropped", f"{name}_prompts_too_long_for_the_context", too_long)
        figures = reply_metrics([r["reply"] for r in rows], [r["prompt"] for r in rows],
                                ended=[r["ended"] for r in rows], n_tokens=[len(r["tokens"]) for r in rows],
                                max_new_tokens=params.max_new_tokens, token_ids=[r["tokens"] for r in rows],
                                thresholds=thresholds)
        results["generation"][name] = figures
        results["series"]["reply_lengths"][name] = [len(r["tokens"]) for r in rows]
        run.summary.add("wrote", "replies", len(rows))
        for r in rows:
            found = detect_failures(r["reply"], r["prompt"], ended=r["ended"], n_tokens=len(r["tokens"]),
                                    max_new_tokens=params.max_new_tokens, tokens=r["tokens"], thresholds=thresholds)
            samples.append({"id": r["id"], "language": r["language"], "model": name, "prompt": r["prompt"],
                            "reply": r["reply"], "n_tokens": len(r["tokens"]), "finish_reason": r["finish_reason"],
                            "flags": sorted(k for k, d in found.items() if d.flagged)})
            by_prompt.setdefault(r["id"], {})[name] = r["reply"]
    for p in prompts[:e.samples_in_results]:
        if p["id"] in by_prompt:
            last = next((m["content"] for m in reversed(p["messages"]) if m["role"] == "user"), "")
            results["samples"].append({"id": p["id"], "language": p.get("language"), "prompt": last,
                                       "replies": by_prompt[p["id"]]})
    return samples


# --- the parts owned by other modules ------------------------------------------------------------------
def probes_part(e: DictConfig, cfg: DictConfig, loaded: Mapping[str, LoadedModel], results: dict[str, Any]) -> None:
    from src.eval.probes import load_probes, score_probes

    probes = load_probes(list(e.probes.paths) or None, list(e.probes.languages) or None)
    for name, model in loaded.items():
        scored = score_probes(model, probes, max_new_tokens=e.probes.max_new_tokens,
                              batch_size=e.probes.batch_size, seed=cfg.seed)
        scored.pop("rows", None)
        results["probes"][name] = scored


def reranker_part(e: DictConfig, cfg: DictConfig, loaded: Mapping[str, LoadedModel], prompts: list[dict[str, Any]],
                  results: dict[str, Any], run: StageRun, samples: list[dict[str, Any]]) -> None:
    from src.eval.reranker_eval import compare_best_of_n, evaluate_reranker

    r = e.reranker
    figures = evaluate_reranker(resolve(r.dir), resolve(r.samples_path), k=r.k, max_groups=r.max_groups,
                                batch_size=r.batch_size, seed=cfg.seed)
    results["series"]["reranker_scores"] = figures.pop("scores_by_kind", {})
    if r.best_of_n:
        if r.model not in loaded and r.candidates != "markov":
            absent(results, run, "reranker.best_of_n", f"its chat model {r.model} is absent")
        else:
            best = compare_best_of_n(loaded.get(r.model), resolve(r.dir), prompts[:r.max_prompts], n=r.n,
                                     candidates=r.candidates, markov_dir=resolve(r.markov_dir), seed=cfg.seed,
                                     precision=e.precision, params=sampling(cfg, e.generation.max_new_tokens),
                                     thresholds=OmegaConf.to_container(e.generation.detectors))
            for s in best.pop("samples", []):
                samples.append({**s, "model": f"{r.model}+best_of_{r.n}"} if isinstance(s, dict) else s)
            figures["best_of_n"] = best
    results["reranker"] = figures


def latency_part(e: DictConfig, cfg: DictConfig, loaded: Mapping[str, LoadedModel], prompts: list[dict[str, Any]],
                 results: dict[str, Any], run: StageRun) -> None:
    from src.eval.latency import measure_latency

    lat = e.latency
    params = sampling(cfg, lat.max_new_tokens)
    for name, model in loaded.items():
        if not model.chat:
            continue
        reranking = None
        if lat.reranked and e.reranker.enabled and resolve(e.reranker.dir).exists():
            from src.eval.reranker_eval import build_reranking

            reranking = build_reranking(resolve(e.reranker.dir), model, candidates=e.reranker.candidates,
                                        n=e.reranker.n, markov_dir=resolve(e.reranker.markov_dir), params=params)
        figures = measure_latency(model, prompts[:lat.max_prompts], max_new_tokens=lat.max_new_tokens,
                                  repeats=lat.repeats, reranking=reranking, params=params, seed=cfg.seed)
        results["latency"][name] = figures
        results["series"]["latency"][name] = {k: v for k, v in figures.items() if isinstance(v, (int, float))}
        run.summary.timings.update({f"latency.{name}.{k}": float(v) for k, v in figures.items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool)})


def run_part(name: str, enabled: bool, results: dict[str, Any], run: StageRun, fn: Any, *args: Any) -> None:
    """Run one optional part, timed; switched off, or its module missing, or its input missing: the
    part is listed as absent with the reason, and the stage goes on."""
    if not enabled:
        absent(results, run, name, f"switched off (eval.{name}.enabled=false)")
        return
    started = time.perf_counter()
    try:
        fn(*args)
    except ModuleNotFoundError as exc:
        absent(results, run, name, f"module {exc.name} not available")
    except (InputError, ValueError) as exc:
        absent(results, run, name, str(exc).splitlines()[0])
    run.summary.timings[f"{name}_s"] = round(time.perf_counter() - started, 3)


def evaluate(cfg: DictConfig, run: StageRun) -> None:
    e = cfg.eval
    out_dir = resolve(e.out_dir)
    results: dict[str, Any] = {"models": {}, "absent": [], "lm": {}, "unigram": {}, "generation": {}, "samples": [],
                               "probes": {}, "reranker": {}, "latency": {},
                               "series": {"reply_lengths": {}, "reranker_scores": {}, "latency": {}}}
    started = time.perf_counter()
    loaded = load_models(e, results, run)
    run.summary.timings["load_s"] = round(time.perf_counter() - started, 3)
    notes: list[str] = []
    folders = {name: (resolve(folder) if name in loaded else None)
               for name, folder in OmegaConf.to_container(e.models).items()}
    pipeline, series = collect(folders, e.reports_dir, e.tokenizer_report, e.lm.tokens_dir, notes, run.summary.timings)
    results["pipeline"] = pipeline
    results["series"].update(series)
    if "kto" in loaded and not series["kto"]:
        notes.append("kto: no guard curve (val_curve.json) beside the checkpoint")

    if e.lm.enabled:
        started = time.perf_counter()
        held = heldout(e.lm, notes)
        for corpus in [c for c, h in held.items() if not (h.texts or h.conversations)]:
            absent(results, run, f"lm.{corpus}", "no held-out document (the split put every one in train)")
            del held[corpus]
        for name, model in loaded.items():
            results["lm"][name], dropped = score_model(model, held, e.lm.batch_size)
            for key, n in dropped.items():
                run.summary.add("dropped", f"lm_{name}_{key}", n)
        block = min((m.model.block_size for m in loaded.values()), default=1 << 30)
        results["unigram"] = unigram_baseline(e.lm, held, block, notes)
        for corpus, h in held.items():
            run.summary.add("read", f"lm_{corpus}_bytes", h.bytes)
            if h.left_out:
                run.summary.add("dropped", f"lm_{corpus}_documents_beyond_max_bytes", h.left_out)
        run.summary.timings["lm_s"] = round(time.perf_counter() - started, 3)
    else:
        absent(results, run, "lm", "switched off (eval.lm.enabled=false)")

    prompts: list[dict[str, Any]] = []
    if e.generation.enabled or e.reranker.enabled or e.latency.enabled:
        from src.eval.probes import load_prompts

        prompts = load_prompts(e.generation.prompts or None)
        run.summary.add("read", "prompts", len(prompts))
    samples: list[dict[str, Any]] = []
    if e.generation.enabled:
        started = time.perf_counter()
        samples = generation_part(e, cfg, loaded, prompts, results, run)
        run.summary.timings["generation_s"] = round(time.perf_counter() - started, 3)
    else:
        absent(results, run, "generation", "switched off (eval.generation.enabled=false)")
    run_part("probes", e.probes.enabled, results, run, probes_part, e, cfg, loaded, results)
    run_part("reranker", e.reranker.enabled, results, run, reranker_part, e, cfg, loaded, prompts, results, run, samples)
    run_part("latency", e.latency.enabled, results, run, latency_part, e, cfg, loaded, prompts, results, run)
    run.summary.notes.extend(notes)
    write_outputs(e, out_dir, results, samples, run)


def write_outputs(e: DictConfig, out_dir: Path, results: dict[str, Any], samples: list[dict[str, Any]],
                  run: StageRun) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "results.json", results)
    write_json_atomic(out_dir / "metrics.json", metrics_view(results))
    write_text_atomic(out_dir / "samples.jsonl",
                      "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    plots = write_plots(out_dir / "plots", results)
    written = ["results.json", "metrics.json", "samples.jsonl"] + [f"plots/{p.name}" for p in plots]
    if e.report:
        from src.eval.report_card import render_report_card

        started = time.perf_counter()
        md, html = render_report_card(results, out_dir)
        written += [md.name, html.name]
        run.summary.timings["report_s"] = round(time.perf_counter() - started, 3)
    run.summary.add("wrote", "files", len(written))
    run.summary.add("wrote", "samples", len(samples))
    for name in written:
        run.log_artifact(out_dir / name, artifact_path="eval" if "/" not in name else "eval/plots")
    log_evaluated_runs(results, run)


def log_evaluated_runs(results: dict[str, Any], run: StageRun) -> None:
    """Tag the MLflow run with the runs that made the models it evaluated (src.tracking.producing_runs).
    The ids stay out of results.json: a DVC output must not change when only the run ids do."""
    if not run.tracking_active:
        return
    try:
        from src.tracking import producing_runs
    except ImportError:
        run.summary.notes.append("MLflow: src.tracking.producing_runs not available; the evaluated runs are not linked")
        return
    import mlflow

    stages = [name for name, m in results["models"].items() if m.get("present")]
    if results.get("reranker"):  # the reranker part ran: link the reranker stage's run too
        stages.append("reranker")
    found = producing_runs(stages, cfg=run.cfg)
    mlflow.set_tags({f"eval.evaluated.{stage}": run_id for stage, run_id in found.items() if run_id})
    missing = [stage for stage, run_id in found.items() if not run_id]
    if missing:
        run.summary.notes.append(f"MLflow: no run in the store made the {', '.join(missing)} model(s); not linked")
    run.log_metrics(flat_numbers(metrics_view(results)))


def flat_numbers(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flat_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out
