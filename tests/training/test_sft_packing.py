"""Packed attention in the GPT: conversations sharing a window cannot see each other."""

from __future__ import annotations

import pytest
import torch

from src.models.gpt import GPT, packed_positions_and_mask

CONFIGS = {
    "learned": {},
    "rope": {"pos_emb": "rope", "norm": "rmsnorm", "qk_norm": True, "mlp": "relu2"},
}


@pytest.fixture(autouse=True, params=["mask", "segments"])
def attention_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both packed-attention paths a CPU takes (src/models/packed_attention.py)."""
    from src.models import packed_attention

    monkeypatch.setattr(packed_attention, "SEGMENTS_MIN_CONTEXT", 1 if request.param == "segments" else 10**9)
    return request.param


def tiny_gpt(**extra) -> GPT:
    torch.manual_seed(0)
    return GPT({"vocab_size": 50, "block_size": 24, "n_layer": 2, "n_head": 2, "n_embd": 32, **extra}).eval()


def test_positions_restart_and_mask_is_block_diagonal_causal() -> None:
    doc = torch.tensor([[0, 0, 0, 1, 1, 2]])
    positions, mask = packed_positions_and_mask(doc)
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0]]
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ], dtype=torch.bool)
    assert torch.equal(mask[0, 0], expected)


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_perturbing_one_packed_conversation_leaves_the_others_logits_unchanged(arch: str) -> None:
    model = tiny_gpt(**CONFIGS[arch])
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 50, (2, 20), generator=gen)
    doc = torch.tensor([[0] * 7 + [1] * 9 + [2] * 4, [0] * 12 + [1] * 8])
    with torch.no_grad():
        before, _ = model(idx, doc_ids=doc)
        changed = idx.clone()
        changed[0, 7:16] = torch.randint(0, 50, (9,), generator=gen)  # conversation 1 of row 0
        changed[1, :12] = torch.randint(0, 50, (12,), generator=gen)  # conversation 0 of row 1
        after, _ = model(changed, doc_ids=doc)
    untouched = [(0, slice(0, 7)), (0, slice(16, 20)), (1, slice(12, 20))]
    for row, cols in untouched:
        assert torch.equal(before[row, cols], after[row, cols]), (row, cols)
    assert not torch.allclose(before[0, 7:16], after[0, 7:16])


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_a_packed_conversation_reads_as_if_it_were_alone(arch: str) -> None:
    """Positions restart: the second conversation's logits equal those of running it by itself."""
    model = tiny_gpt(**CONFIGS[arch])
    idx = torch.randint(0, 50, (1, 18), generator=torch.Generator().manual_seed(2))
    doc = torch.tensor([[0] * 10 + [1] * 8])
    with torch.no_grad():
        packed, _ = model(idx, doc_ids=doc)
        alone, _ = model(idx[:, 10:])
        first, _ = model(idx[:, :10])
    torch.testing.assert_close(packed[:, 10:], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed[:, :10], first, rtol=1e-5, atol=1e-5)


def test_one_document_per_row_equals_the_plain_causal_path() -> None:
    model = tiny_gpt()
    idx = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain, _ = model(idx)
        packed, _ = model(idx, doc_ids=torch.zeros_like(idx))
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)
