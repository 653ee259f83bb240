"""Sequence generation: a character-level language model, trained with teacher forcing.

Training reads windows of T true characters and predicts the next character at every step
(teacher forcing: the input at step t is the true character t, never the model's own guess), so
it is IO transduction with every real step counting. Sampling feeds the model's own choices back,
one character at a time, drawn from p^(1/temperature) restricted to the ``top_k`` most likely.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.text import TextVectorizer
from ..errors import ConfigError, ShapeError
from ..layers import Dense, Embedding, Layer
from ..models import Model, Sequential
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


def char_vectorizer(text: str) -> TextVectorizer:
    """A character vocabulary of ``text``, case and punctuation kept."""
    return TextVectorizer(split="character", standardize=None).fit([text])


def char_windows(text: str, vectorizer: TextVectorizer, steps: int,
                 stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forcing pairs: x (N, T) ids of characters [s, s+T), y (N, T) ids of [s+1, s+T+1),
    for s = 0, stride, 2·stride, ... (default stride T)."""
    ids = vectorizer.transform([text])[0]
    stride = stride or steps
    if steps < 1 or stride < 1:
        raise ConfigError(f"char_windows: steps and stride must be >= 1, got {steps}, {stride}")
    if len(ids) < steps + 1:
        raise ShapeError(f"char_windows: the text has {len(ids)} characters, a window needs "
                         f"{steps + 1}; use a longer text or fewer steps")
    starts = np.arange(0, len(ids) - steps, stride)
    windows = ids[starts[:, None] + np.arange(steps + 1)]  # (N, T + 1)
    return windows[:, :-1], windows[:, 1:]


def language_model(recurrent: Layer, vocab_size: int, embed_dim: int = 32,
                   optimizer="adam") -> Sequential:
    """A compiled LM: ids (B, T) -> next-character probabilities (B, T, V).
    ``recurrent`` must return sequences."""
    if not getattr(recurrent, "return_sequences", False):
        raise ConfigError(f"language_model: {recurrent.name} must have return_sequences=True")
    model = Sequential([Embedding(vocab_size, embed_dim), recurrent,
                        Dense(vocab_size, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["acc"])
    return model


def next_distribution(probs: np.ndarray, temperature: float = 1.0,
                      top_k: int | None = None) -> np.ndarray:
    """(V,) probabilities -> the sampling distribution: p^(1/temperature) renormalized, all but
    the ``top_k`` largest set to 0. Temperature 0 is greedy (all mass on the argmax)."""
    if temperature < 0:
        raise ConfigError(f"sampling: temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"sampling: top_k must be >= 1, got {top_k}")
    p = np.asarray(probs, dtype=np.float64)
    if temperature == 0:
        out = np.zeros_like(p)
        out[np.argmax(p)] = 1.0
        return out
    logp = np.log(np.clip(p, 1e-12, None)) / temperature
    if top_k is not None and top_k < len(p):
        cutoff = np.sort(logp)[-top_k]
        logp = np.where(logp >= cutoff, logp, -np.inf)
    out = np.exp(logp - logp.max())
    return out / out.sum()


@torch.no_grad()
def sample(model: Model, vectorizer: TextVectorizer, prompt: str, length: int = 200,
           temperature: float = 1.0, top_k: int | None = None, context: int | None = None,
           seed: int | None = None) -> str:
    """``prompt`` followed by ``length`` generated characters. The model reads the last
    ``context`` characters (default: all) at each step."""
    ids = vectorizer.transform([prompt])[0].tolist()
    if not ids:
        raise ConfigError("generate: the prompt is empty; give at least one character")
    rng = np.random.default_rng(seed)
    model.eval()
    out = []
    for _ in range(length):
        window = ids[-context:] if context else ids
        probs = model(torch.tensor([window]))[0, -1].cpu().numpy()  # (V,)
        probs[:2] = 0.0  # never emit padding or the OOV token
        nxt = int(rng.choice(len(probs), p=next_distribution(probs, temperature, top_k)))
        ids.append(nxt)
        out.append(nxt)
    return prompt + vectorizer.inverse([out])[0]


# -- the task: ``rnnkit train --task generate`` -----------------------------------------------
@dataclass
class GenerateOptions:
    """Options of the generate task: a plain text file, a character language model."""

    seq_len: int = 64
    sample_length: int = 200
    embed_dim: int = 32
    validation_fraction: float = 0.2


class Generate(Task):
    name, options = "generate", GenerateOptions
    help = {"seq_len": "characters per training window (and the sampling context)",
            "sample_length": "characters sampled per temperature for metrics.json",
            "embed_dim": "embedding width", "validation_fraction": "held-out tail of the text"}

    def check(self, cfg: TrainConfig) -> None:
        check_positive(cfg.options, "seq_len", "embed_dim")
        check_fraction(cfg.options.validation_fraction)

    def build(self, cfg: TrainConfig, prep: dict) -> Model:
        vectorizer = TextVectorizer.from_config(prep["vectorizer"])
        model = language_model(specs.recurrent_layer(cfg.model, return_sequences=True),
                               len(vectorizer.vocabulary), cfg.options.embed_dim, optimizer(cfg))
        model.build((None, cfg.options.seq_len))
        return model

    def prepare(self, cfg: TrainConfig, for_doctor: bool = False) -> Prepared:
        opt = cfg.options
        text = files.read_text(cfg.data)
        cut = holdout(len(text), opt.validation_fraction)
        vectorizer = char_vectorizer(text[:cut])
        prep = {"vectorizer": vectorizer.to_config()}
        x, y = char_windows(text[:cut], vectorizer, opt.seq_len)
        val = char_windows(text[cut:], vectorizer, min(opt.seq_len, len(text) - cut - 1))
        return Prepared(prep, self.build(cfg, prep), {"x": x, "y": y, "validation_data": val})

    def evaluate(self, run: Run, path: str, out_dir: Path | None) -> dict:
        cfg, opt = run.config, run.config.options
        text = files.read_text(path)
        if run.history:
            text = text[holdout(len(text), opt.validation_fraction):]
        vectorizer = TextVectorizer.from_config(run.preprocessing["vectorizer"])
        x, y = char_windows(text, vectorizer, min(opt.seq_len, len(text) - 1))
        logs = run.model.evaluate(x, y, batch_size=cfg.batch_size, verbose=0, return_dict=True)
        prompt = text[:min(20, len(text))]
        samples = {str(t): sample(run.model, vectorizer, prompt, opt.sample_length, t,
                                  context=opt.seq_len, seed=cfg.seed)
                   for t in (0.2, 0.5, 1.0)}
        return {"model": {"loss": logs["loss"], "accuracy": logs["acc"],
                          "perplexity": float(np.exp(logs["loss"]))}, "samples": samples}


def generate(run: Run, prompt: str, length: int = 200, temperature: float = 1.0,
             top_k: int | None = None, seed: int | None = None) -> str:
    """Text continued from ``prompt`` by a ``generate`` run's language model."""
    if run.config.task != "generate":
        raise ConfigError(f"generate: the run was trained for task {run.config.task!r}, not "
                          "'generate'")
    vectorizer = TextVectorizer.from_config(run.preprocessing["vectorizer"])
    return sample(run.model, vectorizer, prompt, length, temperature, top_k,
                  context=run.config.options.seq_len, seed=seed)


register(Generate())
