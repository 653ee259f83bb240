"""Inference: forward-only throughput at the IMDB shape, and batch-1 streaming step latency.

Targets: forward only under ``torch.no_grad()`` at (B, T, I, H) = (128, 500, 32, 32), rnnkit's
layers (``auto``) >= 1.5x torch.nn's throughput for SimpleRNN, LSTM and GRU; one streaming step
at batch 1 (``layer.stepper()``, the bound ``layer.step``) no slower than torch.nn's cell
(RNNCell, LSTMCell, GRUCell). onnxruntime runs rnnkit's exported model (``rnnkit.interop.export``,
ONNX's own RNN/LSTM/GRU operators) on a one-step (1, 1, I) input; the export has no state
input, so that times one step from the zero state, not a carried one.

    python benchmarks/bench_inference.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile

import torch
from common import env_prefix, interleaved, machine, setup, table, verdict, write_marked

from rnnkit import layers
from rnnkit.interop.torch_nn import from_torch
from rnnkit.models import Sequential

SHAPE = (128, 500, 32, 32)  # (B, T, I, H)
STEP_I, STEP_H, STEPS = 32, 32, 200  # the streaming contenders run STEPS steps per call
TORCH = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
TORCH_CELLS = {"SimpleRNN": torch.nn.RNNCell, "LSTM": torch.nn.LSTMCell, "GRU": torch.nn.GRUCell}
LAYERS = {"SimpleRNN": layers.SimpleRNN, "LSTM": layers.LSTM, "GRU": layers.GRU}


def no_grad(fn):
    def run():
        with torch.no_grad():
            fn()
    return run


def throughput(rounds: int) -> list[list]:
    b, t, i, h = SHAPE
    x = torch.randn(b, t, i)
    rows = []
    for name, tnn in TORCH.items():
        ref = tnn(i, h, batch_first=True)
        layer = from_torch(ref, return_sequences=True)
        with torch.no_grad():
            layer(x)
        ms = interleaved({"torch.nn": no_grad(lambda ref=ref: ref(x)),
                          "rnnkit": no_grad(lambda layer=layer: layer(x))}, rounds)
        speed = ms["torch.nn"] / ms["rnnkit"]
        rows.append([f"{SHAPE}", name, layer.last_kernel, ms["torch.nn"], ms["rnnkit"],
                     f"{speed:.2f}", verdict(speed >= 1.5)])
    return rows


def onnx_step(name: str, tmp: str):
    """A one-step run of rnnkit's exported model in onnxruntime, or None without it."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    model = Sequential([LAYERS[name](STEP_H, return_sequences=True)])
    model.build((None, 1, STEP_I))
    path = model.export(os.path.join(tmp, f"{name}.onnx"))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"x": torch.randn(1, 1, STEP_I).numpy()}

    def run():
        for _ in range(STEPS):
            session.run(None, feed)
    return run


def streaming(rounds: int) -> tuple[list[list], list[str]]:
    rows, notes = [], []
    xs = torch.randn(STEPS, 1, STEP_I)
    with tempfile.TemporaryDirectory() as tmp:
        for name, tcell in TORCH_CELLS.items():
            cell = tcell(STEP_I, STEP_H)
            layer = LAYERS[name](STEP_H)
            layer.ensure_built((1, 1, STEP_I))

            def torch_steps(cell=cell):
                state = None
                for x_t in xs:
                    state = cell(x_t, state)

            def rnnkit_steps(layer=layer):
                states = None
                for x_t in xs:
                    _, states = layer.step(x_t, states)

            def bound_steps(fn=layer.stepper()):  # noqa: B008 (bound once, outside the timing)
                states = None
                for x_t in xs:
                    _, states = fn(x_t, states)

            contenders = {"torch.nn cell": no_grad(torch_steps), "rnnkit layer.step": no_grad(rnnkit_steps),
                          "rnnkit layer.stepper()": no_grad(bound_steps)}
            ort = onnx_step(name, tmp)
            if ort is not None:
                contenders["onnxruntime"] = ort
            us = {k: v * 1e3 / STEPS for k, v in interleaved(contenders, rounds).items()}
            ratio = us["rnnkit layer.stepper()"] / us["torch.nn cell"]
            rows.append([name, layer.last_kernel, us["torch.nn cell"], us["rnnkit layer.step"],
                         us["rnnkit layer.stepper()"], us.get("onnxruntime", "n/a"), f"{ratio:.2f}",
                         verdict(ratio <= 1.0)])
    if importlib.util.find_spec("onnxruntime") is None:
        notes.append("onnxruntime is not installed (the `export` extra), so its column reads n/a.")
    return rows, notes


def run(rounds: int = 9) -> str:
    setup()
    load = os.getloadavg()[0]
    fwd = throughput(rounds)
    stream, notes = streaming(3 * rounds)
    return "\n\n".join([
        "### Inference: forward only under torch.no_grad() (ms, median)",
        table(["(B, T, I, H)", "cell", "kernel", "torch.nn", "rnnkit (auto)",
               "throughput vs torch.nn", ">= 1.5x"], fwd),
        f"### Streaming: one step at batch 1, I = H = {STEP_H} (µs per step, median over calls of "
        f"{STEPS} steps)",
        table(["cell", "rnnkit kernel", "torch.nn cell", "rnnkit layer.step", "rnnkit layer.stepper()",
               "onnxruntime (exported)", "stepper / torch.nn", "<= 1.0x"], stream),
        "`layer.step(x_t, states)` checks its arguments on every call; `layer.stepper()` does them "
        "once and returns the bound step (for these cells one call of torch's cell op).",
        *notes,
        f"Command: `{env_prefix()}python benchmarks/bench_inference.py` ({machine()}; "
        f"load average {load:.2f} "
        f"before, {os.getloadavg()[0]:.2f} after). onnxruntime runs the exported model on a (1, 1, I) "
        "input: the export has no state input, so each call is one step from the zero state.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    text = run(rounds=2 if args.quick else 9)
    print(text)
    if not args.no_write:
        write_marked("bench_inference", text)


if __name__ == "__main__":
    main()
