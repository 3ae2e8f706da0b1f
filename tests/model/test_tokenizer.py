"""Tokenizer wrapper and text preprocessing."""

from __future__ import annotations

import pytest
import torch

from model import BasicTextCleaner, TextPreprocessor, Tokenizer, TokenizerError

DOG = "summarize: Studies have shown that owning a dog is good for you."
DOG_IDS = [21603, 10, 6536, 43, 2008, 24, 293, 53, 3, 9, 1782, 19, 207, 21, 25, 5, 1]


def test_encodes_like_t5(tokenizer):
    assert tokenizer.encode(DOG) == DOG_IDS
    assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1 and len(tokenizer) == 32100


def test_batch_is_right_padded(tokenizer):
    batch = tokenizer.batch_encode([DOG, "Hello world"])
    assert batch.input_ids.shape == (2, 17)
    assert batch.input_ids[1, :3].tolist() == [8774, 296, 1] and (batch.input_ids[1, 3:] == 0).all()
    assert batch.attention_mask.sum(1).tolist() == [17, 3]
    assert batch.truncated == [False, False]


def test_long_text_is_truncated_by_policy_keeping_eos(tokenizer):
    batch = tokenizer.batch_encode(["word " * 5000, "short"], max_length=64)
    assert batch.input_ids.shape == (2, 64)
    assert batch.input_ids[0, -1].item() == 1 and batch.truncated == [True, False]
    assert (
        len(tokenizer.tokenize(["word " * 5000])[0]) > 64
    )  # the untruncated ids stay available for chunking


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_text_is_a_clear_error(tokenizer, text):
    with pytest.raises(TokenizerError, match="text 1 is empty"):
        tokenizer.batch_encode(["fine", text])


def test_decode_and_shift_right(tokenizer):
    assert tokenizer.decode(DOG_IDS) == DOG
    labels = tokenizer.encode_targets(["a dog", "good"], max_length=8)
    assert labels.tolist() == [[3, 9, 1782, 1], [207, 1, -100, -100]]
    assert Tokenizer.shift_right(labels).tolist() == [[0, 3, 9, 1782], [0, 207, 1, 0]]
    assert tokenizer.batch_decode(torch.tensor([[3, 9, 1782, 1, 0]])) == ["a dog"]


def test_save_and_reload(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "spiece.model").is_file() and (tmp_path / "tok" / "tokenizer.json").is_file()
    assert Tokenizer.from_folder(tmp_path / "tok").encode(DOG) == DOG_IDS


def test_missing_tokenizer_folder(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        Tokenizer.from_folder(tmp_path / "none")
    with pytest.raises(TokenizerError, match="neither spiece.model nor tokenizer.json"):
        Tokenizer.from_folder(tmp_path)


def test_cleaner_normalises_and_strips_control_characters():
    cleaner = BasicTextCleaner()
    assert cleaner.fit_transform(["  Caf\u0065\u0301\x00 \t\n\n of\ufb01ce\u200b  "]) == ["Café office"]
    assert BasicTextCleaner(lowercase=True).transform(["ABC"]) == ["abc"]


def test_preprocessor_is_sklearn_compatible():
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline

    pre = TextPreprocessor(BasicTextCleaner(), max_chars=5)
    assert clone(pre).get_params()["max_chars"] == 5
    assert make_pipeline(pre).fit_transform([" hello   world "]) == ["hello"]
