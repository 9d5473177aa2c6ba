from __future__ import annotations

import pytest
import torch

from src.generation.engine import Engine
from src.generation.sampling import GREEDY
from src.models.gpt import GPT
from src.serve.batch import RunningBatch

PROMPTS = [[5, 6, 7, 8, 9], [11, 12], list(range(20, 41)), [3]]
JOIN_AT = [0, 3, 5, 9]  # decode step at which each prompt joins the running batch


def tiny_model(**options) -> GPT:
    torch.manual_seed(0)
    return GPT({"vocab_size": 101, "block_size": 48, "n_layer": 2, "n_head": 4, "n_embd": 64, **options}).eval()


def decode_with_joins(model: GPT, max_new: int, slack: int, growth: int = 64,
                      ) -> tuple[dict[int, list[int]], RunningBatch]:
    """Greedy decoding where prompts join a running batch at different steps and leave when done."""
    batch = RunningBatch(model, slack=slack, growth=growth)
    out: dict[int, list[int]] = {}
    rows: list[int] = []
    logits = None
    step = 0
    while step <= max(JOIN_AT) or rows:
        for i, at in enumerate(JOIN_AT):
            if at == step:
                new = batch.join(PROMPTS[i])
                rows.append(i)
                out[i] = []
                logits = new if logits is None else torch.cat([logits, new])
        if rows:
            tokens = logits.argmax(-1)
            keep = []
            for r, i in enumerate(rows):
                out[i].append(int(tokens[r]))
                # Stop at max_new, or when the new token would not fit the context (as the engine).
                if len(out[i]) < max_new and batch.row_length(r) + 1 <= model.block_size:
                    keep.append(r)
            rows = [rows[r] for r in keep]
            batch.keep(keep)
            logits = batch.step(tokens[keep]) if rows else None
        step += 1
    return out, batch


@pytest.mark.parametrize("options", [{}, {"pos_emb": "rope", "norm": "rmsnorm"}], ids=["learned", "rope"])
def test_rows_joining_and_leaving_decode_exactly_as_alone(options):
    model = tiny_model(**options)
    engine = Engine(model, precision=None)
    reference = [engine.generate([p], GREEDY.with_(max_new_tokens=40), stop_ids=[])[0].tokens for p in PROMPTS]
    # A small slack forces the cache to be compacted several times on the way.
    out, batch = decode_with_joins(model, 40, slack=3)
    assert [out[i] for i in range(len(PROMPTS))] == reference
    assert len(out[2]) == 48 - 21 + 1  # the long prompt ran into the context, as in the engine
    assert batch.compactions >= 2
    assert batch.size == 0


@pytest.mark.parametrize("slack,growth", [(3, 4), (12, 4), (3, 16)])
def test_the_cache_grows_and_compacts_without_changing_a_token(slack, growth):
    model = tiny_model()
    engine = Engine(model, precision=None)
    reference = [engine.generate([p], GREEDY.with_(max_new_tokens=40), stop_ids=[])[0].tokens for p in PROMPTS]
    out, batch = decode_with_joins(model, 40, slack=slack, growth=growth)
    assert [out[i] for i in range(len(PROMPTS))] == reference
    assert batch.resizes >= 1 and (batch.compactions >= 1 or slack > 3)
    assert batch.width <= 48 + slack


def test_a_longer_prompt_joining_moves_the_running_rows():
    model = tiny_model()
    batch = RunningBatch(model)
    batch.join([1, 2])
    batch.step(torch.tensor([3]))
    assert batch.end == 3
    batch.join(list(range(10, 30)))  # 20 tokens > end: the running row moves right
    assert batch.end == 20 and batch.lengths.tolist() == [3, 20]
    stepped = batch.step(torch.tensor([4, 5]))

    def alone(ids: list[int]) -> torch.Tensor:  # next-token logits of the whole sequence, no cache
        return model(torch.tensor([ids]))[0][0, -1]

    assert torch.allclose(stepped[0], alone([1, 2, 3, 4]), atol=1e-5)
    assert torch.allclose(stepped[1], alone([*range(10, 30), 5]), atol=1e-5)


def test_a_full_row_cannot_step_and_bad_prompts_are_refused():
    model = tiny_model()
    batch = RunningBatch(model)
    with pytest.raises(ValueError, match="prompt of 0 tokens"):
        batch.join([])
    with pytest.raises(ValueError, match="prompt of 49 tokens"):
        batch.join([1] * 49)
    batch.join([1] * 48)
    with pytest.raises(ValueError, match="full context"):
        batch.step(torch.tensor([1]))
