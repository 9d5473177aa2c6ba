"""The kernels behind packed attention agree with the block-diagonal mask, and the plan picks them."""

from __future__ import annotations

import pytest
import torch

from src.models import packed_attention
from src.models.gpt import GPT
from src.models.packed_attention import attend, packed_layout, row_segments, run_starts

DOCS = [
    [[0] * 7 + [1] * 9 + [2] * 4, [0] * 20],                 # several runs; one row of one sequence
    [[0] * 3 + [1] * 14 + [2] * 3, [0] * 12 + [1] * 8],       # a trailing padding run of its own
    [[0, 1, 2, 3] + [4] * 16, [0] * 19 + [1]],                 # runs of a single token
]


def qkv(B: int, T: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, 2, T, 8, generator=g, requires_grad=True) for _ in range(3))


@pytest.mark.parametrize("docs", DOCS)
@pytest.mark.parametrize("mode", ["segments", "auto"])
def test_modes_match_the_mask_values_and_gradients(docs: list[list[int]], mode: str) -> None:
    doc = torch.tensor(docs)
    outs, grads = [], []
    for m in ("mask", mode):
        q, k, v = qkv(*doc.shape)
        y = attend(packed_layout(doc, mode=m), q, k, v, 0.0)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([t.grad for t in (q, k, v)])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_segments_are_the_runs_of_each_row() -> None:
    doc = torch.tensor([[0, 0, 1, 1, 1, 2], [5, 5, 5, 5, 5, 5]])
    assert row_segments(run_starts(doc)) == [[(0, 2), (2, 5), (5, 6)], [(0, 6)]]


def test_auto_plan_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    one_per_row = torch.zeros(2, 8, dtype=torch.long)
    several = torch.tensor([[0] * 4 + [1] * 4, [0] * 8])
    assert packed_layout(one_per_row).mode == "causal"
    assert packed_layout(several).mode == "mask"  # a short context: the dense mask is cheaper
    long = torch.tensor([[0] * 300 + [1] * 300, [0] * 600])
    assert packed_layout(long).mode == "segments"
    # runs of 300 go to the bucket of 512, padded to 300; the run of 600 to the bucket of 1024
    assert [tuple(g.shape) for g in packed_layout(long).varlen.gather] == [(2, 300), (1, 600)]
    # while torch.compile traces (no data-dependent slicing) the mask path is taken
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert packed_layout(several).mode == "mask"
    with pytest.raises(ValueError, match="packed attention mode 'nope'"):
        packed_layout(several, mode="nope")


def test_flex_only_on_cuda_without_dropout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packed_attention, "flex_kernels", lambda: (None, None))
    assert packed_attention.use_flex(torch.device("cuda"), dropout_active=False)
    assert not packed_attention.use_flex(torch.device("cuda"), dropout_active=True)
    assert not packed_attention.use_flex(torch.device("cpu"), dropout_active=False)
    monkeypatch.setattr(packed_attention, "flex_kernels", lambda: None)
    assert not packed_attention.use_flex(torch.device("cuda"), dropout_active=False)


def test_training_with_dropout_keeps_conversations_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropout inside attention (segments path) still never mixes conversations: a perturbation of
    one changes no other's output under the same dropout draws."""
    monkeypatch.setattr(packed_attention, "SEGMENTS_MIN_CONTEXT", 1)
    torch.manual_seed(0)
    model = GPT({"vocab_size": 50, "block_size": 20, "n_layer": 2, "n_head": 2, "n_embd": 32,
                 "dropout": 0.2}).train()
    idx = torch.randint(0, 50, (1, 20), generator=torch.Generator().manual_seed(1))
    doc = torch.tensor([[0] * 8 + [1] * 12])
    changed = idx.clone()
    changed[0, :8] = (changed[0, :8] + 1) % 50
    torch.manual_seed(5)
    before, _ = model(idx, doc_ids=doc)
    assert packed_layout(doc).mode == "segments"
    torch.manual_seed(5)
    after, _ = model(changed, doc_ids=doc)
    assert torch.equal(before[0, 8:], after[0, 8:])


@pytest.mark.gpu
@pytest.mark.parametrize("docs", DOCS)
def test_flex_matches_the_mask_on_cuda(docs: list[list[int]]) -> None:
    if packed_attention.flex_kernels() is None:
        pytest.skip("this torch has no FlexAttention")
    doc = torch.tensor(docs, device="cuda").repeat(1, 8)  # T = 160: more than one flex block
    doc = doc + torch.arange(8, device="cuda").repeat_interleave(20)[None] * 10  # runs stay distinct
    q, k, v = (t.detach().cuda().requires_grad_() for t in qkv(*doc.shape))
    flex = attend(packed_layout(doc), q, k, v, 0.0)
    assert packed_layout(doc).mode == "flex"
    masked = attend(packed_layout(doc, mode="mask"), q, k, v, 0.0)
    torch.testing.assert_close(flex, masked, rtol=2e-3, atol=2e-3)
