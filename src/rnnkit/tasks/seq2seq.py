"""Sequence transduction with an encoder-decoder (Sutskever et al. 2014; Cho et al. 2014).

The encoder (any rnnkit recurrent layer: SimpleRNN, LSTM, GRU, Bidirectional, Stacked, DilatedRNN)
reads the source ids and returns one context vector c (B, He). A Dense "bridge" turns c into the
decoder's initial state, and c is also fed to the decoder at every step next to the embedding of
the previous target token. Training uses teacher forcing: the decoder reads ``<s> y_1 ... y_{T-1}``
and predicts ``y_1 ... y_T </s>``; padded target steps are "don't care" (the output mask), so the
loop is Model.fit unchanged. Decoding is greedy or beam search, one step at a time.

The demo data is digit-string addition (``"123+45"`` -> ``"168"``), generated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.text import TextVectorizer
from ..errors import ConfigError
from ..layers import LSTM, Dense, Embedding, Layer
from ..layers.config import deserialize_layer, serialize_layer
from ..layers.recurrent import RNN
from ..models import Model
from . import files, specs
from .protocol import (
    Prepared,
    Run,
    Task,
    TrainConfig,
    check_fraction,
    check_positive,
    holdout,
    optimizer,
    register,
)

BOS, EOS = "<s>", "</s>"


def addition_pairs(n: int, digits: int = 3, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` pairs ("a+b", "a+b evaluated") with a, b uniform in [0, 10^digits)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 10 ** digits, (2, n))
    return [(f"{x}+{y}", str(x + y)) for x, y in zip(a.tolist(), b.tolist())]


def vectorizers(sources: list[str], targets: list[str]) -> tuple[TextVectorizer, TextVectorizer]:
    """Character vocabularies fit on the training pairs; the target one ends with <s> and </s>."""
    src = TextVectorizer(split="character", standardize=None).fit(sources)
    tgt = TextVectorizer(split="character", standardize=None).fit(targets)
    tgt.set_vocabulary([*tgt.vocabulary[2:], BOS, EOS])
    return src, tgt


def special_ids(tgt: TextVectorizer) -> tuple[int, int]:
    """(id of <s>, id of </s>) in the target vocabulary."""
    vocab = tgt.vocabulary
    if BOS not in vocab or EOS not in vocab:
        raise ConfigError(f"seq2seq: the target vocabulary lacks {BOS!r}/{EOS!r}; build it with "
                          "tasks.seq2seq.vectorizers")
    return vocab.index(BOS), vocab.index(EOS)


def encode_targets(tgt: TextVectorizer, texts: list[str], length: int | None = None) -> np.ndarray:
    """Texts -> (N, L) ids with </s> after each text and 0 padding; L = longest + 1 by default."""
    _, eos = special_ids(tgt)
    ids = [row[row != 0].tolist() + [eos] for row in tgt.transform(texts)]
    length = length or max(map(len, ids))
    out = np.zeros((len(ids), length), dtype=np.int64)
    for i, seq in enumerate(ids):
        out[i, :min(len(seq), length)] = seq[:length]
    return out


def decode_targets(tgt: TextVectorizer, ids: np.ndarray) -> list[str]:
    """(N, L) ids -> texts, each cut at its first </s>."""
    bos, eos = special_ids(tgt)
    rows = []
    for row in np.asarray(ids).tolist():
        row = row[:row.index(eos)] if eos in row else row
        rows.append([i for i in row if i != bos])
    return [tgt.inverse([r])[0] if r else "" for r in rows]


def exact_match(predicted: list[str], expected: list[str]) -> float:
    """The fraction of predictions equal to their target string."""
    if len(predicted) != len(expected) or not expected:
        raise ConfigError(f"exact_match: got {len(predicted)} predictions for {len(expected)} "
                          "targets")
    return float(np.mean([p == e for p, e in zip(predicted, expected)]))


class Seq2Seq(Model):
    """Encoder-decoder over token ids: source (B, S) -> target probabilities (B, T, V).

    Args:
        encoder: a recurrent layer returning its last output (B, He) (return_sequences=False).
        decoder: a SimpleRNN, LSTM or GRU (its units and cell); it is run one step at a time.
        src_vocab: the source vocabulary's size (id 0 is padding).
        tgt_vocab: the target vocabulary's size (id 0 is padding).
        bos: the target id of <s>.
        eos: the target id of </s>.
        max_length: the most tokens greedy and beam decoding produce.

    ``model(src, targets)`` is teacher-forced; ``model(src)`` decodes greedily.
    """

    def __init__(self, encoder: Layer, decoder: RNN, src_vocab: int, tgt_vocab: int, bos: int,
                 eos: int, max_length: int, embed_dim: int = 32, name: str | None = None):
        super().__init__(name)
        if getattr(encoder, "return_sequences", False):
            raise ConfigError(f"{self.name}: the encoder {encoder.name} must return its last "
                              "output (return_sequences=False)")
        if not isinstance(decoder, RNN):
            raise ConfigError(f"{self.name}: the decoder must be a SimpleRNN, LSTM or GRU, got "
                              f"{type(decoder).__name__}")
        # a copy that returns its sequence and state, for step-by-step decoding
        decoder = type(decoder).from_config({**decoder.get_config(), "return_sequences": True,
                                             "return_state": True})
        self.args = {"src_vocab": int(src_vocab), "tgt_vocab": int(tgt_vocab), "bos": int(bos),
                     "eos": int(eos), "max_length": int(max_length), "embed_dim": int(embed_dim)}
        self.src_embed = Embedding(src_vocab, embed_dim, mask_zero=True)
        self.encoder = encoder
        self.tgt_embed = Embedding(tgt_vocab, embed_dim)
        self.decoder = decoder
        self.state_count = 2 if isinstance(decoder, LSTM) else 1
        self.bridge = Dense(self.state_count * decoder.units, activation="tanh")
        self.head = Dense(tgt_vocab, activation="softmax")
        self.bos, self.eos, self.max_length = int(bos), int(eos), int(max_length)

    # -- saving (Model.save / rnnkit.models.load_model(..., custom_objects={"Seq2Seq": Seq2Seq})) --
    def get_config(self) -> dict:
        return {"encoder": serialize_layer(self.encoder), "decoder": serialize_layer(self.decoder),
                "name": self.name, **self.args}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Seq2Seq:
        """The model, built (its lazy parameters created) so saved weights can be loaded."""
        layers = {k: deserialize_layer(config[k], custom_objects) for k in ("encoder", "decoder")}
        model = cls(**{**config, **layers})
        model.build_from_batch(torch.ones(1, 2, dtype=torch.long))
        return model

    # -- forward -----------------------------------------------------------------------------
    def encode(self, src: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(B, S) ids -> context c (B, He) and the decoder's initial state [(B, H), ...]."""
        emb = self.src_embed(src)  # (B, S, E)
        context = self.encoder(emb, mask=self.src_embed.compute_mask(src, None))
        return context, list(self.bridge(context).chunk(self.state_count, dim=-1))

    def decode_step(self, prev: Tensor, context: Tensor, state: list[Tensor]):
        """Previous ids (B, T') -> probabilities (B, T', V) and the state after them."""
        steps = prev.shape[1]
        inputs = torch.cat([self.tgt_embed(prev), context[:, None].expand(-1, steps, -1)], -1)
        out, *state = self.decoder(inputs, initial_state=state)  # (B, T', H)
        return self.head(out), state

    def forward(self, src: Tensor, targets: Tensor | None = None) -> Tensor:
        if targets is None:
            return self.greedy(src)[1]
        context, state = self.encode(src)
        start = torch.full_like(targets[:, :1], self.bos)
        return self.decode_step(torch.cat([start, targets[:, :-1]], 1), context, state)[0]

    def call_with_mask(self, x: Tensor, targets: Tensor | None = None):
        """Teacher-forced outputs, masked at the target's padding (the "don't care" steps)."""
        if targets is None:
            return self(x), None
        return self(x, targets), targets != 0

    @torch.no_grad()
    def test_step(self, batch) -> dict[str, float]:
        # Validation loss is teacher-forced, as in training; decoding quality is exact_match.
        x, y, sample_weight = batch
        y_pred, mask = self.call_with_mask(x, targets=y)
        weight = mask.float() if sample_weight is None else mask.float() * sample_weight[:, None]
        loss = self.compute_loss(y, y_pred, weight)
        return self.compute_metrics(loss, y, y_pred, weight, len(x))

    @torch.no_grad()
    def predict_step(self, batch) -> Tensor:
        return self.greedy(batch[0])[0]

    # -- decoding ----------------------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Ids (B, L) and probabilities (B, L, V), L = max_length, the argmax fed back."""
        context, state = self.encode(src)
        prev = torch.full((src.shape[0], 1), self.bos, dtype=torch.long, device=src.device)
        ids, probs = [], []
        for _ in range(self.max_length):
            p, state = self.decode_step(prev, context, state)  # (B, 1, V)
            prev = p.argmax(-1)
            ids.append(prev)
            probs.append(p)
        return torch.cat(ids, 1), torch.cat(probs, 1)

    @torch.no_grad()
    def beam_search(self, src: Tensor, beam_width: int = 3) -> Tensor:
        """(B, S) -> (B, L) ids: per source the hypothesis of highest total log-probability
        among those that ended with </s> (or the best unfinished one after max_length)."""
        if beam_width < 1:
            raise ConfigError(f"beam_search: beam_width must be >= 1, got {beam_width}")
        self.eval()
        rows = [self._beam_one(src[i:i + 1], beam_width) for i in range(src.shape[0])]
        out = torch.zeros(src.shape[0], self.max_length, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def _beam_one(self, src: Tensor, k: int) -> list[int]:
        context, state = self.encode(src)  # (1, He), [(1, H)]
        beams = [([], 0.0, state)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(self.max_length):
            prev = torch.tensor([[seq[-1] if seq else self.bos] for seq, _, _ in beams])
            states = [torch.cat([s[j] for _, _, s in beams]) for j in range(self.state_count)]
            probs, new_states = self.decode_step(prev, context.expand(len(beams), -1), states)
            logp = torch.log(probs[:, 0].clamp_min(1e-12))  # (k', V)
            scores = logp + torch.tensor([score for _, score, _ in beams])[:, None]
            top = scores.flatten().topk(min(k, scores.numel()))
            candidates = []
            for score, flat in zip(top.values.tolist(), top.indices.tolist()):
                b, token = divmod(flat, scores.shape[1])
                seq = beams[b][0] + [token]
                if token == self.eos:
                    finished.append((seq, score))
                else:
                    candidates.append((seq, score, [s[b:b + 1] for s in new_states]))
            beams = candidates
            best_done = max((s for _, s in finished), default=-np.inf)
            if not beams or best_done >= max(s for _, s, _ in beams):
                break
        pool = finished or [(seq, score) for seq, score, _ in beams]
        return max(pool, key=lambda item: item[1])[0]


# -- the task: ``rnnkit train --task seq2seq`` ------------------------------------------------
@dataclass
class Seq2SeqOptions:
    """Options of the seq2seq task: a TSV of source<TAB>target lines."""

    decoder: str = "gru:64"
    beam_width: int = 3
    embed_dim: int = 32
    validation_fraction: float = 0.2


class Seq2SeqTask(Task):
    name, options = "seq2seq", Seq2SeqOptions
    help = {"decoder": "decoder spec (simple, lstm or gru)", "beam_width": "beams in decoding",
            "embed_dim": "embedding width", "validation_fraction": "held-out tail of the pairs"}
    custom_objects = {"Seq2Seq": Seq2Seq}

    def check(self, cfg: TrainConfig) -> None:
        check_positive(cfg.options, "beam_width", "embed_dim")
        check_fraction(cfg.options.validation_fraction)

    def build(self, cfg: TrainConfig, prep: dict) -> Model:
        src, tgt = _vectorizers(prep)
        bos, eos = special_ids(tgt)
        model = Seq2Seq(specs.recurrent_layer(cfg.model), specs.recurrent_layer(cfg.options.decoder),
                        len(src.vocabulary), len(tgt.vocabulary), bos, eos, prep["max_length"],
                        cfg.options.embed_dim)
        model.compile(optimizer=optimizer(cfg), loss="sparse_categorical_crossentropy",
                      metrics=["acc"])
        model.build_from_batch(torch.ones(1, 2, dtype=torch.long))
        return model

    def prepare(self, cfg: TrainConfig, for_doctor: bool = False) -> Prepared:
        sources, targets = files.pairs(cfg.data)
        cut = holdout(len(sources), cfg.options.validation_fraction)
        src, tgt = vectorizers(sources[:cut], targets[:cut])
        y = encode_targets(tgt, targets)
        prep = {"source": src.to_config(), "target": tgt.to_config(), "max_length": y.shape[1] + 2}
        x = src.transform(sources)
        return Prepared(prep, self.build(cfg, prep),
                        {"x": x[:cut], "y": y[:cut], "validation_data": (x[cut:], y[cut:])})

    def evaluate(self, run: Run, path: str, out_dir: Path | None) -> dict:
        cfg = run.config
        sources, targets = files.pairs(path)
        if run.history:
            cut = holdout(len(sources), cfg.options.validation_fraction)
            sources, targets = sources[cut:], targets[cut:]
        src, tgt = _vectorizers(run.preprocessing)
        x = src.transform(sources)
        logs = run.model.evaluate(x, encode_targets(tgt, targets), batch_size=cfg.batch_size,
                                  verbose=0, return_dict=True)
        greedy = decode_targets(tgt, run.model.predict(x, verbose=0))
        beam = decode_targets(tgt, run.model.beam_search(torch.as_tensor(x),
                                                         cfg.options.beam_width).numpy())
        return {"model": {"exact_match": exact_match(greedy, targets),
                          "exact_match_beam": exact_match(beam, targets),
                          "loss": logs["loss"], "token_accuracy": logs["acc"]}}

    def predict(self, run: Run, path: str) -> tuple[list[str], list[list]]:
        sources = [line.split("\t")[0] for line in files.read_text(path).splitlines()
                   if line.strip()]
        src, tgt = _vectorizers(run.preprocessing)
        x = torch.as_tensor(src.transform(sources))
        out = decode_targets(tgt, run.model.beam_search(x, run.config.options.beam_width).numpy())
        return ["source", "prediction"], [[s, p] for s, p in zip(sources, out)]


def _vectorizers(prep: dict) -> tuple[TextVectorizer, TextVectorizer]:
    return TextVectorizer.from_config(prep["source"]), TextVectorizer.from_config(prep["target"])


register(Seq2SeqTask())
