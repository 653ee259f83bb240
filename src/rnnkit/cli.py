"""The ``rnnkit`` command: train, evaluate, predict, generate, doctor, export.

Arguments (and a TOML ``--config`` file with the same option names) become a
:class:`rnnkit.tasks.protocol.TrainConfig` (the common options and the task's own); everything
else is a call into the library. See docs/cli.md for every option and the model spec grammar.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tomllib
import types
import typing
from pathlib import Path

from .diagnosis import Finding, Report, diagnose
from .errors import ConfigError, RnnkitError
from .tasks import generation, protocol, runs, specs

_HELP = {
    "task": "what to train: " + ", ".join(protocol.REGISTRY) + " (or 'rnnkit train TASK ...')",
    "data": "CSV, TXT, TSV file (or aclImdb folder)",
    "out": "run directory to write", "model": f"recurrent layer spec: {specs.GRAMMAR}",
    "epochs": "passes over the training data", "batch_size": "samples per optimizer step",
    "optimizer": "adam, rmsprop, sgd, ...", "learning_rate": "the optimizer's step size",
    "patience": "stop when the validation loss has not improved for N epochs (0: off); "
                "the best epoch's weights are kept",
    "lr_decay": "multiply the learning rate by this each epoch after the third",
    "resume": "continue the run in this directory (its --out) exactly where it stopped; reads "
              "its config.json, so no other option is needed (options that contradict it are "
              "refused; --epochs may continue it further)",
    "checkpoint_every": "optimizer steps between training checkpoints (0: after every epoch)",
    "seed": "seeds Python, numpy and torch (weights, data order)",
    "threads": "torch CPU threads (0: torch's default); 1 on a busy shared machine",
    "quiet": "print nothing but errors",
}
_COMMON_TYPES = typing.get_type_hints(protocol.TrainConfig)


def _fields(task: str | None) -> dict[str, type]:
    """Option name -> its type, the common options and (given a task) the task's."""
    out = {name: _plain(_COMMON_TYPES[name]) for name in protocol.COMMON}
    if task is not None:
        out.update({name: _plain(t) for name, t in
                    typing.get_type_hints(protocol.get(task).options).items()})
    return out


def _plain(want):
    """``int | None`` -> int: a common option left out takes the task's default."""
    args = [a for a in typing.get_args(want) if a is not type(None)]
    return args[0] if typing.get_origin(want) in (types.UnionType, typing.Union) else want


def load_config(path: str | Path, task: str | None = None) -> dict:
    """A TOML file's options, flat, checked against the task's (the file's ``task`` key, else
    ``task``): unknown keys and wrong types raise ConfigError naming the file and the key."""
    raw = _read_toml(path)
    fields = _fields(raw.get("task", task or protocol.TrainConfig.task))
    return {_field_name(key, path, fields): _checked(key, value, path, fields)
            for key, value in raw.items()}


def _read_toml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def _field_name(key: str, path: Path, fields: dict) -> str:
    name = key.replace("-", "_")
    if name not in fields:
        raise ConfigError(f"{path}: unknown key {key!r}; expected one of "
                          f"{', '.join(sorted(fields))}")
    return name


def _checked(key: str, value, path: Path, fields: dict):
    want = fields[key.replace("-", "_")]
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


def _add_train_options(parser: argparse.ArgumentParser, task: str | None) -> None:
    """The common options, and the options of ``task`` in a group of their own."""
    parser.add_argument("--config", help="TOML file with any of these options")
    fields = _fields(task)
    own = protocol.get(task) if task else None
    group = parser.add_argument_group(f"options of task {task!r}") if own else parser
    for name, want in fields.items():
        where, text = (parser, _HELP.get(name)) if name in protocol.COMMON \
            else (group, own.help.get(name))
        flag = "--" + name.replace("_", "-")
        # the task named (first word, --config, --resume or the default) stays in the Namespace
        default = task if name == "task" and task else argparse.SUPPRESS
        kwargs = {"default": default, "help": text}
        if want is bool:
            where.add_argument(flag, action="store_true", **kwargs)
        elif typing.get_origin(want) is list:
            where.add_argument(flag, type=_comma_list(typing.get_args(want)[0]), **kwargs)
        else:
            where.add_argument(flag, type=want, **kwargs)


def build_parser(task: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``train`` and ``doctor`` take ``task``'s options (none without a task)."""
    parser = argparse.ArgumentParser(prog="rnnkit", description="Train, evaluate and use "
                                     "recurrent models from the shell (docs/cli.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    epilog = ("a task's own options: rnnkit train TASK --help (tasks: "
              f"{', '.join(protocol.REGISTRY)})")
    _add_train_options(sub.add_parser("train", help="train a model and write a run directory",
                                      epilog=epilog), task)
    doctor = sub.add_parser("doctor", help="run the NaN-loss checklist on what train would fit",
                            epilog=epilog)
    _add_train_options(doctor, task)
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
    predict.add_argument("--future", help="panel forecasts: a long CSV of the known-future "
                         "covariates over the horizon (id, time, covariates)")
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


def _task_in(argv: list[str]) -> tuple[str | None, list[str]]:
    """The task a train/doctor command line names, and the line with ``TASK`` turned into
    ``--task TASK``: a first positional word, ``--task``, the ``--config`` file's ``task``, the
    ``--resume`` run's; None when it names none (then only ``--help`` needs one)."""
    if len(argv) > 1 and argv[1] in protocol.REGISTRY:
        return argv[1], [argv[0], "--task", argv[1], *argv[2:]]
    pre = argparse.ArgumentParser(add_help=False)
    for flag in ("--task", "--config", "--resume"):
        pre.add_argument(flag)
    known, _ = pre.parse_known_args(argv[1:])
    if known.task:
        return known.task, argv
    if known.config and Path(known.config).is_file():
        return _read_toml(known.config).get("task"), argv
    if known.resume:
        return runs.resume_config(known.resume).task, argv
    return None, argv


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line as a Namespace, the train/doctor options being the named task's."""
    task = None
    if argv and argv[0] in ("train", "doctor"):
        task, argv = _task_in(argv)
        if task is None and not {"-h", "--help"} & set(argv):
            task = protocol.TrainConfig.task
        if task is not None:
            protocol.get(task)  # an unknown task: the error names the known ones
    return build_parser(task).parse_args(argv)


def train_config(args: argparse.Namespace) -> protocol.TrainConfig:
    """Defaults, then the TOML file, then the flags given on the command line; with --resume
    DIR, the run's saved options (which the others may not contradict)."""
    task = getattr(args, "task", None)
    options = load_config(args.config, task) if getattr(args, "config", None) else {}
    options.update({k: v for k, v in vars(args).items() if k in _fields(task)})
    if options.get("resume"):
        cfg = runs.resume_config(options["resume"], options)
        for key in runs.RESUME_MAY_CHANGE:
            if key in options and key != "resume":
                setattr(cfg, key, options[key])
        return cfg
    return protocol.TrainConfig.from_flat(options)


def _say(args, *text) -> None:
    if not getattr(args, "quiet", False):
        print(*text)


def cmd_train(args) -> None:
    cfg = train_config(args)
    run = runs.train(cfg)
    written = ", ".join(sorted(p.name for p in Path(cfg.out).iterdir()))
    _say(args, f"wrote {cfg.out}/: {written}")
    _say(args, json.dumps(run.metrics["model"], indent=1))
    for line in protocol.get(cfg.task).summary(run.metrics):
        _say(args, line)


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
    run = runs.load(args.run_dir)
    metrics = runs.evaluate(run, args.data)
    if args.json:
        print(json.dumps(metrics, indent=1))
        return
    for name, values in metrics.items():
        if isinstance(values, dict) and all(isinstance(v, float) for v in values.values()):
            print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        elif isinstance(values, dict):
            for key, inner in values.items():
                print(f"{name} {key}: {inner}")
    for line in protocol.get(run.config.task).summary(metrics):
        print(line)


def cmd_predict(args) -> None:
    header, rows = runs.predict(runs.load(args.run_dir), args.data, args.future)
    if args.out:
        runs.write_csv(args.out, header, rows)
        _say(args, f"wrote {len(rows)} predictions to {args.out}")
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)


def cmd_generate(args) -> None:
    print(generation.generate(runs.load(args.run_dir), args.prompt, args.length, args.temperature,
                        args.top_k, args.seed))


def cmd_export(args) -> None:
    runs.load(args.run_dir).model.export(args.out, format=args.format)
    _say(args, f"wrote {args.out}")


COMMANDS = {"train": cmd_train, "doctor": cmd_doctor, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "generate": cmd_generate, "export": cmd_export}


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; user errors raise (see :func:`main`). Returns the
    exit code (doctor: 1 when it found something)."""
    args = parse(list(sys.argv[1:] if argv is None else argv))
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
