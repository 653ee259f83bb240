"""pad_sequences (Keras semantics) and TextVectorizer."""

import json

import numpy as np
import pytest

from rnnkit.data import TextVectorizer, pad_sequences
from rnnkit.errors import ConfigError, NotBuiltError, ShapeError

SEQS = [[1, 2, 3, 4], [5, 6], [], [7]]


@pytest.mark.parametrize("padding, truncating, expected", [
    ("pre", "pre", [[2, 3, 4], [0, 5, 6], [0, 0, 0], [0, 0, 7]]),
    ("post", "pre", [[2, 3, 4], [5, 6, 0], [0, 0, 0], [7, 0, 0]]),
    ("pre", "post", [[1, 2, 3], [0, 5, 6], [0, 0, 0], [0, 0, 7]]),
    ("post", "post", [[1, 2, 3], [5, 6, 0], [0, 0, 0], [7, 0, 0]]),
])
def test_pad_sequences_modes(padding, truncating, expected):
    out = pad_sequences(SEQS, maxlen=3, padding=padding, truncating=truncating)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


def test_pad_sequences_maxlen_none_is_longest_and_value_dtype():
    out = pad_sequences([[0.5], [1.5, 2.5]], dtype="float32", value=-1.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[-1.0, 0.5], [1.5, 2.5]])


def test_pad_sequences_value_cast_to_int_dtype_as_keras():
    np.testing.assert_array_equal(pad_sequences([[1]], maxlen=2, value=9), [[9, 1]])


def test_pad_sequences_keeps_step_shape():
    seqs = [np.ones((3, 2)), np.full((1, 2), 5.0)]
    out = pad_sequences(seqs, maxlen=2, dtype="float64")
    assert out.shape == (2, 2, 2)
    np.testing.assert_array_equal(out[1], [[0, 0], [5, 5]])


def test_pad_sequences_errors():
    with pytest.raises(ShapeError, match="sequence 1 has steps of shape"):
        pad_sequences([np.ones((2, 2)), np.ones((2, 3))])
    with pytest.raises(ConfigError, match="padding must be 'pre' or 'post'"):
        pad_sequences(SEQS, padding="middle")
    with pytest.raises(ConfigError, match="dtype=object"):
        pad_sequences([["a"]], value="x")
    with pytest.raises(ShapeError, match="sequence 0 is not a sequence"):
        pad_sequences([3])


def test_pad_sequences_empty_inputs():
    assert pad_sequences([]).shape == (0, 0)
    np.testing.assert_array_equal(pad_sequences([[1, 2]], maxlen=0), np.zeros((1, 0)))


def test_text_vectorizer_vocabulary_order_and_ids():
    v = TextVectorizer().fit(["The cat, the DOG!", "a cat sat"])
    # counts: the 2, cat 2, dog 1, a 1, sat 1; ties -> the greater string first (as Keras)
    assert v.vocabulary == ["", "[UNK]", "the", "cat", "sat", "dog", "a"]
    np.testing.assert_array_equal(v.transform(["the bird sat.", "cat"]), [[2, 1, 4], [3, 0, 0]])


def test_text_vectorizer_max_tokens_and_length():
    v = TextVectorizer(max_tokens=4, output_sequence_length=3).fit(["b b a a a c"])
    assert v.vocabulary == ["", "[UNK]", "a", "b"]
    np.testing.assert_array_equal(v.transform(["c a", "a b c a b"]), [[1, 2, 0], [2, 3, 1]])


def test_text_vectorizer_character_level_and_inverse():
    v = TextVectorizer(split="character", standardize="lower").fit(["abba"])
    ids = v.transform(["Abc!"])
    np.testing.assert_array_equal(ids, [[3, 2, 1, 1]])
    assert v.inverse(ids) == ["ab[UNK][UNK]"]


def test_text_vectorizer_config_round_trip_through_json():
    v = TextVectorizer(max_tokens=10, output_sequence_length=4).fit(["x y z x", "y y"])
    restored = TextVectorizer.from_config(json.loads(json.dumps(v.to_config())))
    texts = ["z y w", "x"]
    np.testing.assert_array_equal(restored.transform(texts), v.transform(texts))
    assert restored.vocabulary == v.vocabulary


def test_text_vectorizer_fit_only_on_given_split():
    v = TextVectorizer().fit(["train words"])
    assert v.vocabulary == ["", "[UNK]", "words", "train"]
    assert v.transform(["test words"]).tolist() == [[1, 2]]


def test_text_vectorizer_errors():
    with pytest.raises(NotBuiltError, match="call fit"):
        TextVectorizer().transform(["a"])
    with pytest.raises(ConfigError, match="one string"):
        TextVectorizer().fit("abc")
    with pytest.raises(ConfigError, match="split must be one of"):
        TextVectorizer(split="bpe")
    with pytest.raises(ConfigError, match="reserved"):
        TextVectorizer(vocabulary=["[UNK]"])
