"""Seq2seq on digit-string addition ("123+45" -> "168"): encoder-decoder, teacher forcing,
greedy and beam-search decoding, exact-match accuracy on held-out pairs.

    python examples/seq2seq_addition.py [--digits 2] [--pairs 6000] [--encoder bidirectional-gru:32]
        [--decoder gru:64] [--epochs 15] [--beam-width 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnkit.optimizers import Adam
from rnnkit.tasks import seq2seq as s2s
from rnnkit.tasks import specs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--encoder", default="bidirectional-gru:32")
    parser.add_argument("--decoder", default="gru:64")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--beam-width", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    pairs = s2s.addition_pairs(args.pairs, args.digits, seed=args.seed)
    cut = args.pairs - args.held_out
    sources, targets = [a for a, _ in pairs], [b for _, b in pairs]
    src, tgt = s2s.vectorizers(sources[:cut], targets[:cut])
    x, y = src.transform(sources), s2s.encode_targets(tgt, targets)
    bos, eos = s2s.special_ids(tgt)
    model = s2s.Seq2Seq(specs.recurrent_layer(args.encoder), specs.recurrent_layer(args.decoder),
                        len(src.vocabulary), len(tgt.vocabulary), bos, eos, y.shape[1] + 1)
    model.compile(optimizer=Adam(learning_rate=3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["acc"])
    start = time.perf_counter()
    model.fit(x[:cut], y[:cut], epochs=args.epochs, batch_size=64,
              validation_data=(x[cut:], y[cut:]), verbose=args.verbose)
    seconds = time.perf_counter() - start
    truth = targets[cut:]
    greedy = s2s.decode_targets(tgt, model.predict(x[cut:], verbose=0))
    beam = s2s.decode_targets(tgt, model.beam_search(torch.as_tensor(x[cut:]), args.beam_width).numpy())
    print(f"\n{args.digits}-digit addition, {cut} training pairs, {args.held_out} held out, "
          f"encoder {args.encoder}, decoder {args.decoder}, {args.epochs} epochs ({seconds:.0f} s)")
    print(f"exact match: greedy {s2s.exact_match(greedy, truth):.3f}, beam (width "
          f"{args.beam_width}) {s2s.exact_match(beam, truth):.3f}")
    for source, g, t in list(zip(sources[cut:], greedy, truth))[:5]:
        print(f"  {source} = {g}  (true {t})")


if __name__ == "__main__":
    main()
