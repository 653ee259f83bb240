"""M4 Hourly through rnnkit's CLI, beside the published table and neuralforecast (issue 17).

    python examples/m4_hourly.py --data ../shared/data/m4 --out m4runs \
        [--models esrnn,segrnn,auto] [--nf-python /work/venvs/nf/bin/python] [--write-doc]

The M4 files (one series a row) become one long table (``unique_id, ds, y``; ``ds`` the step) of
the 414 training series followed by their 48 test values, so ``--test-size 48`` (the default:
the horizon) is exactly M4's test. Each model is one ``rnnkit train`` command (printed, then run
in this process and timed); every run also scores naive, seasonal naive, Naive2, NLinear and
DLinear on the same split with the same metric code (sMAPE, MASE at m = 24, OWA against Naive2:
``rnnkit.data.evaluation``, which reproduces Naive2's published 18.383 / 2.395). With
``--nf-python``, ``benchmarks/m4_neuralforecast.py`` trains neuralforecast's LSTM and RNN on the
same split in that virtualenv (its docstring says how to make one), and their forecasts are scored
here by the same code. ``--write-doc`` puts the table into docs/results.md (block ``m4-hourly``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from rnnkit import cli
from rnnkit.data import evaluation
from rnnkit.datasets import m4

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMON = ["--id-col", "unique_id", "--time-col", "ds", "--target", "y", "--horizon", "48",
          "--season", "24", "--quiet"]
MODELS = {  # name: the model's own options (each found on the validation part, docs/results.md)
    "esrnn": ["--model", "esrnn-lstm:64", "--lookback", "336", "--segment", "24", "--loss", "mae",
              "--learning-rate", "3e-3", "--batch-size", "256", "--epochs", "6",
              "--lr-decay", "1.0"],
    "segrnn": ["--model", "segrnn:128", "--lookback", "336", "--segment", "24", "--loss", "mae",
               "--batch-size", "256", "--epochs", "6"],
    "auto": ["--model", "auto", "--lookback", "336", "--segment", "24", "--loss", "mae",
             "--batch-size", "256", "--epochs", "6"],
}
PUBLISHED = [("ES-RNN (Smyl), M4 winner", 9.328, 0.893, 0.440),
             ("Naive2 (the OWA reference)", 18.383, 2.395, 1.000)]


def long_table(data: pathlib.Path, out: pathlib.Path) -> tuple[pathlib.Path, m4.M4Data]:
    split = m4.load(data, "Hourly")
    path = out / "m4_hourly_long.csv"
    if not path.is_file():
        split.to_long(include_test=True).to_csv(path, index=False)
    return path, split


def run_model(name: str, table: pathlib.Path, out: pathlib.Path, threads: int) -> dict:
    argv = ["train", "forecast", "--data", str(table), *COMMON, *MODELS[name],
            "--threads", str(threads), "--out", str(out / name)]
    print("rnnkit " + " ".join(argv), flush=True)
    start = time.perf_counter()
    cli.run(argv)
    seconds = time.perf_counter() - start
    metrics = json.loads((out / name / "metrics.json").read_text())
    return {"metrics": metrics, "seconds": seconds}


def neuralforecast(python: str, data: pathlib.Path, out: pathlib.Path, split: m4.M4Data,
                   threads: int) -> dict:
    """neuralforecast's LSTM and RNN in their own venv, scored here."""
    target = out / "neuralforecast"
    cmd = [python, str(ROOT / "benchmarks" / "m4_neuralforecast.py"), "--out", str(target),
           "--data-dir", str(data), "--threads", str(threads)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    info = json.loads((target / "run.json").read_text())
    frame = pd.read_csv(target / "forecasts.csv")
    return scored(frame, info, split)


def scored(frame: pd.DataFrame, info: dict, split: m4.M4Data) -> dict:
    """neuralforecast's forecasts (unique_id, step, one column a model) scored by our code."""
    rows = {}
    for model in [c for c in frame.columns if c not in ("unique_id", "step")]:
        table = frame.pivot(index="unique_id", columns="step", values=model).loc[split.ids]
        _, summary = evaluation.panel_scores(split.test, {model: table.to_numpy()}, split.train,
                                             split.season, split.ids)
        rows[f"neuralforecast {model}"] = {**summary[model],
                                           "seconds": info["results"][model]["train_seconds"]}
    return rows


def table(results: dict, nf: dict) -> str:
    lines = ["| M4 Hourly (414 series, h=48) | sMAPE | MASE | OWA | train time here |",
             "|---|---|---|---|---|"]
    for name, smape, mase, owa in PUBLISHED:
        lines.append(f"| {name}, published | {smape:.3f} | {mase:.3f} | {owa:.3f} | |")
    first = next(iter(results.values()), None)
    if first is not None:
        for name, scores in first["metrics"]["panel"]["baselines"].items():
            lines.append(f"| {name} (our run) | {scores['smape']:.3f} | {scores['mase']:.3f} | "
                         f"{scores['owa']:.3f} | |")
    for name, result in results.items():
        scores = result["metrics"]["panel"]["model"]
        chosen = result["metrics"].get("auto", {}).get("chosen")
        label = f"rnnkit {name}" + (f" (chose {chosen})" if chosen else "")
        lines.append(f"| {label} | {scores['smape']:.3f} | {scores['mase']:.3f} | "
                     f"{scores['owa']:.3f} | {result['seconds']:.0f} s |")
    for name, scores in nf.items():
        lines.append(f"| {name} | {scores['smape']:.3f} | {scores['mase']:.3f} | "
                     f"{scores['owa']:.3f} | {scores['seconds']:.0f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "m4"))
    parser.add_argument("--out", default="m4runs")
    parser.add_argument("--models", default="esrnn,segrnn,auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nf-python", help="a python with neuralforecast installed")
    parser.add_argument("--nf-results", help="a folder benchmarks/m4_neuralforecast.py wrote "
                        "(forecasts.csv, run.json): score it instead of training again")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = pathlib.Path(args.data)
    path, split = long_table(data, out)
    results = {name: run_model(name, path, out, args.threads) for name in args.models.split(",")
               if name}
    nf = neuralforecast(args.nf_python, data, out, split, args.threads) if args.nf_python else {}
    if args.nf_results:
        folder = pathlib.Path(args.nf_results)
        nf = scored(pd.read_csv(folder / "forecasts.csv"),
                    json.loads((folder / "run.json").read_text()), split)
    text = table(results, nf)
    print(text)
    (out / "table.md").write_text(text + "\n")
    if args.write_doc:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import markers

        markers.write_marked("m4-hourly", text, markers.RESULTS_DOC)
    assert np.isfinite([r["metrics"]["panel"]["model"]["owa"] for r in results.values()]).all()


if __name__ == "__main__":
    main()
