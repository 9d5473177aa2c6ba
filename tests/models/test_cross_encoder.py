"""Cross-encoders: the own encoder attends both ways, padding changes nothing, exports round-trip,
and the hf backbone saves a directory sentence_transformers.CrossEncoder scores identically."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
import torch

from src.generation.reranker import RerankerLoadError, export_hf, export_own, load_reranker
from src.models.cross_encoder import HFCrossEncoder, OwnCrossEncoder
from src.models.gpt import GPT
from src.tokenizers.char import CharTokenizer

TINY = {"vocab_size": 128, "block_size": 64, "n_layer": 2, "n_head": 2, "n_embd": 32}


def char_tokenizer() -> CharTokenizer:
    return CharTokenizer(sorted(set(string.ascii_letters + string.digits + " .,!?|'-")))


def own_model(pooling: str = "mean") -> OwnCrossEncoder:
    torch.manual_seed(0)
    tok = char_tokenizer()
    model = OwnCrossEncoder({**TINY, "vocab_size": tok.vocab_size}, pooling)
    model.attach_tokenizer(tok)
    return model.eval()


def test_encode_attends_both_ways_and_forward_stays_causal() -> None:
    torch.manual_seed(0)
    gpt = GPT(TINY).eval()
    a = torch.randint(0, 128, (1, 10))
    b = a.clone()
    b[0, -1] = (a[0, -1] + 1) % 128  # change only the last token
    with torch.no_grad():
        enc_a, enc_b = gpt.encode(a), gpt.encode(b)
        causal_a, causal_b = gpt(a)[0], gpt(b)[0]
    assert not torch.allclose(enc_a[0, 0], enc_b[0, 0])  # the first position sees the last token
    assert torch.allclose(causal_a[0, :-1], causal_b[0, :-1])  # the default path is unchanged


def test_padding_is_invisible() -> None:
    model = own_model()
    with torch.no_grad():
        alone = model(**model.pair_batch(["Hi there."], ["Hello."]))
        padded = model(**model.pair_batch(["Hi there.", "A much longer context line | and another"],
                                          ["Hello.", "A long candidate line, longer than the first one."]))
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_long_pairs_keep_the_latest_context_and_fit_the_block() -> None:
    model = own_model()
    ids = model.encode_pair("old " * 40 + "| newest", "reply " * 40)
    assert len(ids) == TINY["block_size"]
    text = model.tokenizer.decode(ids)
    assert "newest" in text and text.count("reply") >= 5


@pytest.mark.parametrize("pooling", ["mean", "marker"])
def test_own_export_round_trip(tmp_path: Path, pooling: str) -> None:
    model = own_model(pooling)
    export_own(model, model.tokenizer, tmp_path / "rr")
    reranker = load_reranker(tmp_path / "rr", batch_size=2)
    context, candidates = ["Hi.", "How are you?"], ["Fine.", "The train is late today", "No", "Why?", "Ok!"]
    with torch.no_grad():
        direct = torch.sigmoid(model(**model.pair_batch([" | ".join(context)] * 5, candidates))).numpy()
    scores = reranker.score(context, candidates)
    assert scores.shape == (5,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, direct, atol=1e-5)  # batched in another order, same scores
    assert reranker.score(context, []).shape == (0,)


def test_load_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(RerankerLoadError, match="not a reranker export"):
        load_reranker(tmp_path)
    (tmp_path / "reranker.json").write_text('{"backbone": "own", "model": {}}')
    with pytest.raises(RerankerLoadError, match=str(tmp_path)):
        load_reranker(tmp_path)


def tiny_bert(directory: Path) -> Path:
    """A randomly initialized BERT with a word-piece vocabulary written here: no hub access."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = "hi hello how are you fine thanks the train is late why no ok what where".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "|", ".", ",", "?", "!", *words,
             *string.ascii_lowercase, *[f"##{c}" for c in string.ascii_lowercase]]
    directory.mkdir(parents=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt")).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory


def test_hf_export_scores_like_sentence_transformers(tmp_path: Path) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = HFCrossEncoder(tiny_bert(tmp_path / "bert"), max_length=48)
    export_hf(model, tmp_path / "rr")
    context = ["hi", "how are you?"]
    candidates = ["fine thanks", "the train is late", "why", "what where " * 20]
    ours = load_reranker(tmp_path / "rr").score(context, candidates)
    theirs = sentence_transformers.CrossEncoder(str(tmp_path / "rr"), device="cpu").predict(
        [(" | ".join(context), c) for c in candidates])
    np.testing.assert_allclose(ours, np.asarray(theirs, dtype=np.float32), atol=1e-5)


def test_bf16_scores_stay_close_to_fp32(tmp_path: Path) -> None:
    model = own_model()
    export_own(model, model.tokenizer, tmp_path / "rr")
    context, candidates = ["Hi.", "How are you?"], ["Fine.", "The train is late today", "No"]
    exact = load_reranker(tmp_path / "rr").score(context, candidates)
    fast = load_reranker(tmp_path / "rr", precision="bf16")
    assert fast.precision == "bf16"
    np.testing.assert_allclose(fast.score(context, candidates), exact, atol=1e-2)
    with pytest.raises(ValueError, match="precision"):
        load_reranker(tmp_path / "rr", precision="int3")
