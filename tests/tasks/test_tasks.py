"""The four task shapes: specs, "don't care" masks, classifier, tagger, char LM, seq2seq."""

import numpy as np
import pytest
import torch

from rnnkit import layers
from rnnkit.data.csv import DataFormatError
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.tasks import classification, generation, masks, specs, transduction
from rnnkit.tasks import seq2seq as s2s


# -- specs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, kind, check", [
    ("simple:4", layers.SimpleRNN, lambda l: l.activation == "tanh"),
    ("lstm:4", layers.LSTM, lambda l: not l.peephole and not l.coupled),
    ("lstm-peephole:4", layers.LSTM, lambda l: l.peephole is True),
    ("lstm-coupled:4", layers.LSTM, lambda l: l.coupled),
    ("gru:4", layers.GRU, lambda l: l.reset_after),
    ("gru-lecture:4", layers.GRU, lambda l: not l.reset_after),
    ("bidirectional-gru:4", layers.Bidirectional,
     lambda l: isinstance(l.forward_layer, layers.GRU) and l.merge_mode == "concat"),
    ("stacked-lstm:4x3", layers.Stacked,
     lambda l: len(l.layers) == 3 and all(isinstance(x, layers.LSTM) for x in l.layers)),
    ("dilated-gru:4", layers.DilatedRNN, lambda l: l.dilations == (1, 2, 4, 8)),
    ("dilated-simple:4x2", layers.DilatedRNN, lambda l: l.dilations == (1, 2)),
    ("bidirectional:4", layers.Bidirectional, lambda l: isinstance(l.forward_layer, layers.GRU)),
])
def test_spec_builds_the_named_layer(spec, kind, check):
    layer = specs.recurrent_layer(spec)
    assert isinstance(layer, kind) and check(layer)
    out = layer(torch.randn(2, 9, 3))
    assert out.shape == (2, specs.output_features(spec))
    seq = specs.recurrent_layer(spec, return_sequences=True)(torch.randn(2, 9, 3))
    assert seq.shape == (2, 9, specs.output_features(spec))


@pytest.mark.parametrize("spec, message", [
    ("gru", r"model spec 'gru': expected \[bidirectional-"),
    ("tree:32", r"unknown cell 'tree'"),
    ("gru:32x2", r"'x2' \(layers\) needs the stacked- or dilated- wrapper"),
    ("stacked-lstm:8x0", r"layer count must be >= 1"),
])
def test_bad_spec_names_the_grammar(spec, message):
    with pytest.raises(ConfigError, match=message):
        specs.recurrent_layer(spec)


# -- masks: one loop, different masks ---------------------------------------------------------
def test_last_step_mask_makes_transduction_a_many_to_one_loss():
    torch.manual_seed(1)
    model = transduction.sequence_tagger(layers.GRU(5, return_sequences=True), 3)
    x = torch.randn(4, 6, 2)
    y = torch.randint(0, 3, (4, 6))
    lengths = np.array([6, 2, 4, 1])
    weights = torch.as_tensor(masks.last_step_mask(lengths, 6))
    logs = model.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    with torch.no_grad():
        probs = model(x)  # (B, T, C)
    rows = torch.arange(4)
    p_last = probs[rows, torch.as_tensor(lengths - 1)]  # (B, C)
    expected = -torch.log(p_last[rows, y[rows, torch.as_tensor(lengths - 1)]]).mean()
    assert logs["loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_dont_care_steps_change_neither_loss_nor_gradient():
    torch.manual_seed(2)
    model = transduction.sequence_tagger(layers.LSTM(4, return_sequences=True), 3, vocab_size=7)
    x = torch.randint(1, 7, (3, 5))
    labels = np.array([[0, 1, -1, 2, -1], [-1, -1, 1, 1, 0], [2, -1, 0, -1, -1]])
    y, w = masks.dont_care(labels)
    assert w.tolist() == (labels != -1).astype(float).tolist()
    flipped = np.where(labels == -1, 2, y)  # other labels at the don't-care steps

    def loss_and_grad(targets):
        model.zero_grad()
        loss = model.compute_loss(torch.as_tensor(targets), model(x), torch.as_tensor(w))
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    loss_a, grads_a = loss_and_grad(y)
    loss_b, grads_b = loss_and_grad(flipped)
    assert loss_a == loss_b
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


def test_mask_errors():
    with pytest.raises(ShapeError, match=r"lengths must be a \(B,\) array in \[1, 3\]"):
        masks.last_step_mask([4], 3)
    with pytest.raises(ShapeError, match=r"expected \(B, T\) labels"):
        masks.dont_care([1, 2])
    assert masks.padding_mask([[3, 0], [0, 1]]).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_tagger_needs_sequences():
    with pytest.raises(ConfigError, match="must have return_sequences=True"):
        transduction.sequence_tagger(layers.GRU(4), 3)


# -- classification ----------------------------------------------------------------------------
def test_classifier_heads_and_losses():
    binary = classification.sequence_classifier(layers.GRU(4), 2, vocab_size=20)
    multi = classification.sequence_classifier(layers.LSTM(4), 5)
    assert binary.loss.name == "binary_crossentropy" and binary.layers[-1].units == 1
    assert multi.loss.name == "sparse_categorical_crossentropy" and multi.layers[-1].units == 5
    assert binary(torch.randint(1, 20, (3, 7))).shape == (3, 1)
    assert multi(torch.randn(3, 7, 2)).shape == (3, 5)
    with pytest.raises(ConfigError, match="need at least 2 classes, got 1"):
        classification.sequence_classifier(layers.GRU(4), 1)


def test_class_ids_and_confusion_matrix():
    ids = classification.class_ids(["b", "a", "b"], ["a", "b"])
    assert ids.tolist() == [1, 0, 1]
    with pytest.raises(DataFormatError, match=r"f.csv: line 7, column 'y': label 'c' is not one"):
        classification.class_ids(["a", "c"], ["a", "b"], "f.csv", [6, 7], "y")
    matrix = classification.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    probs = np.array([[0.2], [0.7]])
    assert classification.predicted_classes(probs).tolist() == [0, 1]
    assert classification.predicted_classes(np.array([[0.1, 0.7, 0.2]])).tolist() == [1]


# -- generation ---------------------------------------------------------------------------------
def test_char_windows_are_shifted_by_one():
    text = "abcabcabcd"
    v = generation.char_vectorizer(text)
    x, y = generation.char_windows(text, v, steps=4, stride=2)
    assert x.shape == y.shape == (3, 4)
    assert v.inverse(x) == ["abca", "cabc", "bcab"]
    assert v.inverse(y) == ["bcab", "abca", "cabc"]
    with pytest.raises(ShapeError, match="the text has 10 characters, a window needs 11"):
        generation.char_windows(text, v, steps=10)


def test_next_distribution_temperature_and_top_k():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    hot = generation.next_distribution(p, temperature=0.5)
    assert hot == pytest.approx(p**2 / (p**2).sum())
    top2 = generation.next_distribution(p, temperature=1.0, top_k=2)
    assert top2 == pytest.approx([0.0, 0.0, 3 / 7, 4 / 7])
    assert generation.next_distribution(p, temperature=0).tolist() == [0, 0, 0, 1]
    with pytest.raises(ConfigError, match="temperature must be >= 0, got -1"):
        generation.next_distribution(p, temperature=-1)
    with pytest.raises(ConfigError, match="top_k must be >= 1, got 0"):
        generation.next_distribution(p, top_k=0)


def test_sample_is_greedy_with_top_k_1_and_seeded():
    torch.manual_seed(3)
    text = "hello world, hello rnn"
    v = generation.char_vectorizer(text)
    lm = generation.language_model(layers.GRU(8, return_sequences=True), len(v.vocabulary))
    greedy = generation.sample(lm, v, "he", 12, temperature=0)
    assert generation.sample(lm, v, "he", 12, temperature=2.0, top_k=1, seed=5) == greedy
    a = generation.sample(lm, v, "he", 12, temperature=1.0, seed=7)
    assert a == generation.sample(lm, v, "he", 12, temperature=1.0, seed=7)
    assert a.startswith("he") and len(a) == 14
    with pytest.raises(ConfigError, match="the prompt is empty"):
        generation.sample(lm, v, "", 3)


# -- seq2seq ----------------------------------------------------------------------------------
def _tiny_seq2seq(encoder="bidirectional-gru:6", decoder=None):
    pairs = s2s.addition_pairs(50, digits=1, seed=0)
    src, tgt = s2s.vectorizers([a for a, _ in pairs], [b for _, b in pairs])
    bos, eos = s2s.special_ids(tgt)
    model = s2s.Seq2Seq(specs.recurrent_layer(encoder), decoder or layers.LSTM(5),
                        len(src.vocabulary), len(tgt.vocabulary), bos, eos, max_length=4)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["acc"])
    return model, pairs, src, tgt


def test_addition_pairs_and_target_coding():
    pairs = s2s.addition_pairs(20, digits=2, seed=4)
    assert all(int(a) + int(b) == int(t) for (s, t) in pairs for a, b in [s.split("+")])
    src, tgt = s2s.vectorizers([s for s, _ in pairs], [t for _, t in pairs])
    ids = s2s.encode_targets(tgt, ["12", "7"])
    _, eos = s2s.special_ids(tgt)
    assert ids.shape == (2, 3) and ids[0, 2] == eos and ids[1].tolist()[1:] == [eos, 0]
    assert s2s.decode_targets(tgt, ids) == ["12", "7"]
    assert s2s.exact_match(["12", "8"], ["12", "7"]) == 0.5


def test_teacher_forcing_is_causal_and_padding_is_dont_care():
    torch.manual_seed(5)
    model, pairs, src, tgt = _tiny_seq2seq()
    x = torch.as_tensor(src.transform([pairs[0][0], pairs[1][0]]))
    y = torch.as_tensor(s2s.encode_targets(tgt, ["12", "3"]))
    out, mask = model.call_with_mask(x, targets=y)
    assert out.shape == (2, 3, len(tgt.vocabulary))
    assert mask.tolist() == (y != 0).tolist()
    changed = y.clone()
    changed[:, 2] = 3
    # step t reads <s> y_1 .. y_{t-1}: changing y_3 leaves steps 1..3 unchanged
    assert torch.equal(model(x, changed), out)
    changed[:, 0] = 5
    assert torch.equal(model(x, changed)[:, 0], out[:, 0])
    assert not torch.allclose(model(x, changed)[:, 1], out[:, 1])


def test_greedy_equals_beam_of_width_one():
    torch.manual_seed(6)
    model, pairs, src, tgt = _tiny_seq2seq("lstm:6", layers.GRU(6))
    x = torch.as_tensor(src.transform([a for a, _ in pairs[:8]]))
    y = s2s.encode_targets(tgt, [b for _, b in pairs[:8]])
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    greedy = s2s.decode_targets(tgt, model.predict(x, verbose=0))
    assert s2s.decode_targets(tgt, model.beam_search(x, 1).numpy()) == greedy
    with pytest.raises(ConfigError, match="beam_width must be >= 1"):
        model.beam_search(x, 0)


def test_seq2seq_argument_errors():
    with pytest.raises(ConfigError, match="must return its last output"):
        s2s.Seq2Seq(layers.GRU(4, return_sequences=True), layers.GRU(4), 5, 5, 3, 4, 3)
    with pytest.raises(ConfigError, match="the decoder must be a SimpleRNN, LSTM or GRU"):
        s2s.Seq2Seq(layers.GRU(4), layers.Bidirectional(layers.GRU(4)), 5, 5, 3, 4, 3)


def test_seq2seq_saves_and_loads_with_model_save(tmp_path):
    from rnnkit.models import load_model

    torch.manual_seed(7)
    model, pairs, src, tgt = _tiny_seq2seq("stacked-gru:4x2", layers.SimpleRNN(5))
    x = torch.as_tensor(src.transform([a for a, _ in pairs[:6]]))
    model.build_from_batch(x)
    model.preprocessing = {"target": tgt.to_config()}
    model.save(tmp_path / "s2s")
    loaded = load_model(tmp_path / "s2s", custom_objects={"Seq2Seq": s2s.Seq2Seq})
    assert loaded.preprocessing == {"target": tgt.to_config()}
    model.eval()
    assert torch.equal(loaded.greedy(x)[1], model.greedy(x)[1])
    assert torch.equal(loaded.beam_search(x, 2), model.beam_search(x, 2))
