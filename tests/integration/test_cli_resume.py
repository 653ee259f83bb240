"""Every CLI run resumes: SIGKILL at a random step mid-epoch, then ``rnnkit train --resume DIR``
and nothing else, ends with the weights (and history) of a run that was never interrupted, for
each of the four tasks, a panel forecast and ``--model auto`` among them. The killed run is a
subprocess that sends itself SIGKILL as it starts the step after the chosen one (whose checkpoint
is then on disk): the kill lands at the same point on every run, however loaded the machine; the
resumed and the uninterrupted runs then run here, on one thread as the killed one did."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rnnkit import cli
from rnnkit.errors import ConfigError

KILLED = textwrap.dedent("""
    import os, signal, sys
    from rnnkit.models import Model

    step, kill_after, done = Model.train_step, int(sys.argv[1]), 0

    def killed_after(self, batch):
        global done
        if done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        done += 1
        return step(self, batch)

    Model.train_step = killed_after
    from rnnkit import cli
    sys.exit(cli.main(sys.argv[2:]))
""")
TASKS = {  # run: (options, optimizer steps per epoch)
    "forecast": (["--data", "series.csv", "--target", "temp", "--lookback", "12", "--model",
                  "gru:4", "--batch-size", "16"], 10),
    "forecast-panel": (["--data", "panel.csv", "--id-col", "unique_id", "--lookback", "12",
                        "--horizon", "6", "--model", "gru:4", "--batch-size", "16"], 7),
    "forecast-auto": (["--data", "panel.csv", "--id-col", "unique_id", "--lookback", "12",
                       "--horizon", "6", "--segment", "6", "--model", "auto",
                       "--batch-size", "16"], 7),
    "classify": (["--data", "reviews.csv", "--text", "review", "--label", "sentiment",
                  "--model", "lstm:4", "--maxlen", "6", "--batch-size", "8"], 6),
    "generate": (["--data", "text.txt", "--model", "gru:6", "--seq-len", "16",
                  "--sample-length", "5", "--batch-size", "4"], 7),
    "seq2seq": (["--data", "add.tsv", "--model", "gru:8", "--decoder", "lstm:8",
                 "--batch-size", "8"], 8),
}
EPOCHS = 2


def _argv(files, task: str) -> list[str]:
    options, _ = TASKS[task]
    options = [str(files / o) if o.endswith((".csv", ".txt", ".tsv")) else o for o in options]
    return ["--task", task.split("-")[0], *options, "--epochs", str(EPOCHS), "--seed", "5",
            "--threads", "1",
            "--checkpoint-every", "1", "--quiet"]


def _killed_after(step: int, argv: list[str], out, script) -> dict:
    """Run the training until it kills itself after ``step`` optimizer steps; the last
    checkpoint's training.json (made after that step)."""
    done = subprocess.run([sys.executable, str(script), str(step), "train", *argv, "--out",
                           str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-3000:]  # killed, not finished
    info = json.loads((out / "checkpoint" / "training.json").read_text())
    assert info["global_step"] == step
    return info


@pytest.fixture
def threads_kept():
    """The runs set torch's thread count (--threads 1): put the suite's back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_sigkill_mid_epoch_then_resume_dir_alone_gives_the_same_weights(files, tmp_path, task,
                                                                        threads_kept,
                                                                        compiled_built):
    steps = TASKS[task][1]
    rng = np.random.default_rng(sorted(TASKS).index(task))
    step = int(rng.choice([s for s in range(1, EPOCHS * steps) if s % steps]))  # mid-epoch
    (tmp_path / "killed.py").write_text(KILLED)
    argv = _argv(files, task)
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    info = _killed_after(step, argv, killed, tmp_path / "killed.py")
    assert info["step"] > 0, f"killed at an epoch's end ({info}), not mid-epoch"
    assert not (killed / "model").exists()  # it never finished

    assert cli.main(["train", "--resume", str(killed)]) == 0
    # uninterrupted, checkpointed after each epoch only (checkpoints change no number)
    assert cli.main(["train", *argv, "--checkpoint-every", "0", "--out", str(straight)]) == 0
    ours = load_file(killed / "model" / "model.safetensors")
    theirs = load_file(straight / "model" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), \
        f"killed at global step {info['global_step']} (epoch {info['epoch']}, step {info['step']})"
    assert (killed / "history.csv").read_text() == (straight / "history.csv").read_text()


def test_resume_refuses_options_that_contradict_the_run(files, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--task", "forecast", "--data", str(files / "series.csv"), "--target",
            "temp", "--lookback", "8", "--model", "gru:3", "--epochs", "1", "--quiet",
            "--out", str(out)]
    assert cli.main(argv) == 0
    with pytest.raises(ConfigError, match=r"resume: --lookback 9 contradicts the run's lookback "
                                          r"8 \(.*config.json\)"):
        cli.run(["train", "--resume", str(out), "--lookback", "9"])
    with pytest.raises(ConfigError, match=r"resume: --model 'lstm:3' contradicts"):
        cli.run(["train", "--resume", str(out / "checkpoint"), "--model", "lstm:3"])
    # the same options, the data by another path, and more epochs: a finished run goes on
    assert cli.main(["train", "--resume", str(out), "--data",
                     os.path.relpath(files / "series.csv"), "--epochs", "2", "--quiet"]) == 0
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["epochs"] == 2 and len((out / "history.csv").read_text().splitlines()) == 3
