"""The ``rnnkit`` command: train, evaluate, predict, generate, doctor, export.

Arguments (and a TOML ``--config`` file with the same option names) become a
:class:`rnnkit.tasks.runs.TrainConfig`; everything else is a call into the library. See
docs/cli.md for every option and the model spec grammar.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import tomllib
import typing
from pathlib import Path

from .diagnosis import Finding, Report, diagnose
from .errors import ConfigError, RnnkitError
from .tasks import runs, specs

_FIELDS = [f.name for f in dataclasses.fields(runs.TrainConfig)]
_TYPES = typing.get_type_hints(runs.TrainConfig)
_HELP = {
    "task": f"one of {', '.join(runs.TASKS)}", "data": "CSV, TXT, TSV file (or aclImdb folder)",
    "out": "run directory to write", "model": f"recurrent layer spec: {specs.GRAMMAR}",
    "features": "comma-separated input columns (default: every numeric column)",
    "split": "train,validation,test fractions of the rows (forecast)",
    "horizon": "number of future values to predict", "delay": "rows skipped before the horizon",
    "season": "season length in rows for the seasonal naive baseline",
    "decoder": "decoder spec for seq2seq (simple, lstm or gru)",
    "resume": "continue the run in this directory (its --out) exactly where it stopped; reads "
              "its config.json, so no other option is needed (options that contradict it are "
              "refused; --epochs may continue it further)",
    "checkpoint_every": "optimizer steps between training checkpoints (0: after every epoch)",
    "seed": "seeds Python, numpy and torch (weights, data order)",
    "sample_length": "generate: characters sampled per temperature for metrics.json",
    "threads": "torch CPU threads (0: torch's default); 1 on a busy shared machine",
}


def load_config(path: str | Path) -> dict:
    """A TOML file's options, checked against TrainConfig: unknown keys and wrong types raise
    ConfigError naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    return {_field_name(key, path): _checked(key, value, path) for key, value in raw.items()}


def _field_name(key: str, path: Path) -> str:
    name = key.replace("-", "_")
    if name not in _FIELDS:
        raise ConfigError(f"{path}: unknown key {key!r}; expected one of "
                          f"{', '.join(sorted(_FIELDS))}")
    return name


def _checked(key: str, value, path: Path):
    want = _TYPES[key.replace("-", "_")]
    if typing.get_origin(want) is list:
        (item,) = typing.get_args(want)
        ok = isinstance(value, list) and all(_is(v, item) for v in value)
        value = [item(v) for v in value] if ok else value
    else:
        ok = _is(value, want)
        value = want(value) if ok else value
    if not ok:
        raise ConfigError(f"{path}: key {key!r}: expected {_type_name(want)}, got "
                          f"{type(value).__name__} {value!r}")
    return value


def _is(value, want) -> bool:
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, want)


def _type_name(want) -> str:
    if typing.get_origin(want) is list:
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}[
            typing.get_args(want)[0]]
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[want]


def _comma_list(item):
    def parse(text: str):
        try:
            return [item(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__}s, got "
                                             f"{text!r}") from None
    return parse


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file with any of these options")
    for name in _FIELDS:
        flag = "--" + name.replace("_", "-")
        want = _TYPES[name]
        kwargs = {"default": argparse.SUPPRESS, "help": _HELP.get(name)}
        if want is bool:
            parser.add_argument(flag, action="store_true", **kwargs)
        elif typing.get_origin(want) is list:
            parser.add_argument(flag, type=_comma_list(typing.get_args(want)[0]), **kwargs)
        else:
            parser.add_argument(flag, type=want, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnkit", description="Train, evaluate and use "
                                     "recurrent models from the shell (docs/cli.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_options(sub.add_parser("train", help="train a model and write a run directory"))
    doctor = sub.add_parser("doctor", help="run the NaN-loss checklist on what train would fit")
    _add_train_options(doctor)
    doctor.add_argument("--json", action="store_true", help="print the report as JSON, always "
                        "(an unreadable input is an error finding); exit code 1 when an error or "
                        "warning is found, 0 when none")
    doctor.add_argument("--probe-steps", type=int, default=20)
    evaluate = sub.add_parser("evaluate", help="metrics of a run on data (metrics.json shape)")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    predict = sub.add_parser("predict", help="predictions of a run for data")
    predict.add_argument("run_dir")
    predict.add_argument("--data", required=True)
    predict.add_argument("--out", help="CSV file to write (default: print)")
    generate = sub.add_parser("generate", help="sample text from a 'generate' run")
    generate.add_argument("run_dir")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--top-k", type=int, default=None)
    generate.add_argument("--length", type=int, default=200)
    generate.add_argument("--seed", type=int, default=None)
    export = sub.add_parser("export", help="export a run's model (ONNX)")
    export.add_argument("run_dir")
    export.add_argument("--format", default="onnx")
    export.add_argument("--out", required=True)
    for p in (evaluate, predict, generate, export):
        p.add_argument("--quiet", action="store_true")
    return parser


def train_config(args: argparse.Namespace) -> runs.TrainConfig:
    """Defaults, then the TOML file, then the flags given on the command line; with --resume
    DIR, the run's saved options (which the others may not contradict)."""
    options = load_config(args.config) if getattr(args, "config", None) else {}
    options.update({k: v for k, v in vars(args).items() if k in _FIELDS})
    if options.get("resume"):
        cfg = runs.resume_config(options["resume"], options)
        return dataclasses.replace(cfg, **{k: options[k] for k in runs.RESUME_MAY_CHANGE
                                           if k in options and k != "resume"})
    return runs.TrainConfig(**options)


def _say(args, *text) -> None:
    if not getattr(args, "quiet", False):
        print(*text)


def cmd_train(args) -> None:
    cfg = train_config(args)
    run = runs.train(cfg)
    written = ", ".join(sorted(p.name for p in Path(cfg.out).iterdir()))
    _say(args, f"wrote {cfg.out}/: {written}")
    _say(args, json.dumps(run.metrics["model"], indent=1))


def cmd_doctor(args) -> int:
    """The report on what train would fit, every check at once: a broken data file is read
    anyway (each bad cell listed). Exit code 1 when an error or warning was found, else 0;
    ``--json`` prints JSON whatever happens, an unreadable input as an error finding."""
    try:
        cfg = train_config(args)
        ready = runs.prepare(cfg, for_doctor=True)
        report = diagnose(ready.model, ready.data["x"], ready.data["y"], batch_size=cfg.batch_size,
                          validation_data=ready.data["validation_data"],
                          probe_steps=args.probe_steps, source=ready.source)
    except (RnnkitError, FileNotFoundError) as e:
        if not args.json:
            raise
        report = Report([Finding("input", "error", f"the doctor could not read what train "
                                 f"would fit: {e}", "fix the data file or the options named")])
    print(report.to_json() if args.json else str(report))
    return 1 if report.errors or report.warnings else 0


def cmd_evaluate(args) -> None:
    metrics = runs.evaluate(runs.load(args.run_dir), args.data)
    if args.json:
        print(json.dumps(metrics, indent=1))
        return
    for name, values in metrics.items():
        if isinstance(values, dict) and all(isinstance(v, float) for v in values.values()):
            print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        elif isinstance(values, dict):
            for key, inner in values.items():
                print(f"{name} {key}: {inner}")


def cmd_predict(args) -> None:
    header, rows = runs.predict(runs.load(args.run_dir), args.data)
    if args.out:
        runs.write_csv(args.out, header, rows)
        _say(args, f"wrote {len(rows)} predictions to {args.out}")
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)


def cmd_generate(args) -> None:
    print(runs.generate(runs.load(args.run_dir), args.prompt, args.length, args.temperature,
                        args.top_k, args.seed))


def cmd_export(args) -> None:
    runs.load(args.run_dir).model.export(args.out, format=args.format)
    _say(args, f"wrote {args.out}")


COMMANDS = {"train": cmd_train, "doctor": cmd_doctor, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "generate": cmd_generate, "export": cmd_export}


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; user errors raise (see :func:`main`). Returns the
    exit code (doctor: 1 when it found something)."""
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args) or 0


def main(argv: list[str] | None = None) -> int:
    """The console script: user errors print ``rnnkit: error: ...`` and return 2."""
    try:
        return run(argv)
    except (RnnkitError, FileNotFoundError) as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
