"""Repeatable runs (seed=) and training checkpoints that resume to the very same weights."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from helpers import CrashAfter
from rnnkit import callbacks, layers
from rnnkit.errors import ChecksumError, ConfigError, DataFormatError
from rnnkit.models import Sequential
from rnnkit.training import checkpoint


def make_model():
    model = Sequential([layers.GRU(6, dropout=0.2), layers.Dense(1)])
    model.compile("adam", "mse")
    return model


def data(n=48):
    rng = np.random.default_rng(1)
    return rng.normal(size=(n, 5, 3)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b))


def test_same_seed_same_weights_other_seed_other_weights():
    x, y = data()
    runs = []
    for seed in (7, 7, 8):
        model = make_model()
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=seed)
        runs.append(weights(model))
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


def test_checkpointing_does_not_change_the_result(tmp_path):
    x, y = data()
    plain, saved = make_model(), make_model()
    plain.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=3)
    saved.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=3, checkpoint_dir=tmp_path / "ck",
              checkpoint_every=2)
    assert same(weights(plain), weights(saved))
    info = json.loads((tmp_path / "ck" / "training.json").read_text())
    assert (info["epoch"], info["step"], info["global_step"]) == (2, 0, 12)


def _callbacks(tmp_path):
    return [callbacks.ReduceLROnPlateau(patience=1, factor=0.5, min_delta=10.0),
            callbacks.EarlyStopping(patience=5, restore_best_weights=True),
            callbacks.CSVLogger(tmp_path / "log.csv"),
            callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.9)]


@pytest.mark.parametrize("every, crash_after", [(4, 9), (None, 13)])
def test_resume_after_a_crash_ends_with_the_same_weights(tmp_path, every, crash_after):
    x, y = data()
    fit_args = dict(batch_size=8, epochs=3, verbose=0, validation_split=0.25)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = make_model()
    straight.fit(x, y, seed=5, callbacks=_callbacks(tmp_path / "a"), **fit_args)
    crashed, crashed_callbacks = make_model(), _callbacks(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(x, y, seed=5, checkpoint_dir=tmp_path / "ck", checkpoint_every=every,
                    callbacks=[CrashAfter(crash_after), *crashed_callbacks], **fit_args)
    crashed_callbacks[2].on_train_end()  # the crash skipped it: close the CSV file
    info = json.loads((tmp_path / "ck" / "training.json").read_text())
    # 36 training samples in batches of 8: 5 steps per epoch
    assert (info["epoch"], info["step"]) == ((1, 3) if every else (2, 0))
    resumed = make_model()
    history = resumed.fit(x, y, resume=tmp_path / "ck", callbacks=_callbacks(tmp_path / "b"),
                          **fit_args)
    assert same(weights(straight), weights(resumed))
    assert history.history == straight.history.history
    assert resumed.optimizer.learning_rate == straight.optimizer.learning_rate
    assert (tmp_path / "b" / "log.csv").read_text() == (tmp_path / "a" / "log.csv").read_text()


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from rnnkit import callbacks, layers
    from rnnkit.models import Sequential

    mode, ckpt, out = sys.argv[1:4]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 5, 3)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")

    def make():
        model = Sequential([layers.LSTM(6, dropout=0.2), layers.Dense(1)])
        model.compile("rmsprop", "mse")
        return model

    class KillAfterFourSteps(callbacks.Callback):  # the checkpoint holds step 3, step 4 is lost
        done = 0

        def on_train_batch_begin(self, batch, logs=None):
            if self.done == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            self.done += 1

    args = dict(batch_size=8, epochs=3, verbose=0)
    if mode == "killed":
        make().fit(x, y, seed=11, checkpoint_dir=ckpt, checkpoint_every=3,
                   callbacks=[KillAfterFourSteps()], **args)
    else:
        straight, resumed = make(), make()
        straight.fit(x, y, seed=11, **args)
        resumed.fit(x, y, resume=ckpt, **args)
        straight.save_weights(out + "/straight.safetensors")
        resumed.save_weights(out + "/resumed.safetensors")
""")


def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path, compiled_built):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ckpt = tmp_path / "ck"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # it kills itself at a fixed step: a kill from here, after polling for the checkpoint, landed
    # wherever the run had got to on a loaded machine (even past the end of the epochs)
    killed = subprocess.run([sys.executable, str(script), "killed", str(ckpt), str(tmp_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    info = json.loads((ckpt / "training.json").read_text())
    assert (info["global_step"], info["epoch"], info["step"]) == (3, 0, 3)  # mid-epoch

    done = subprocess.run([sys.executable, str(script), "resume", str(ckpt), str(tmp_path)],
                          env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    from safetensors.torch import load_file

    straight = load_file(tmp_path / "straight.safetensors")
    resumed = load_file(tmp_path / "resumed.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


# -- errors -------------------------------------------------------------------------------------
def test_resume_errors(tmp_path):
    x, y = data()
    model = make_model()
    with pytest.raises(DataFormatError, match="no training checkpoint here"):
        model.fit(x, y, verbose=0, resume=tmp_path / "nothing")
    model.fit(x, y, batch_size=8, verbose=0, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ConfigError, match=r"made on .*'batch_size': 8.*this fit has .*'batch_size': 16"):
        make_model().fit(x, y, batch_size=16, verbose=0, resume=tmp_path / "ck")
    with pytest.raises(ConfigError, match="callbacks"):
        make_model().fit(x, y, batch_size=8, epochs=2, verbose=0, resume=tmp_path / "ck",
                         callbacks=[callbacks.EarlyStopping(monitor="loss")])
    other = Sequential([layers.GRU(6), layers.Dense(1)])
    other.compile("sgd", "mse")
    with pytest.raises(ConfigError, match="optimizer Adam.*compiled with SGD"):
        other.fit(x, y, batch_size=8, verbose=0, resume=tmp_path / "ck")
    state = tmp_path / "ck" / "state.safetensors"
    state.write_bytes(state.read_bytes()[:-10])
    with pytest.raises(ChecksumError, match="truncated or corrupted"):
        make_model().fit(x, y, batch_size=8, verbose=0, resume=tmp_path / "ck")


def test_checkpoint_argument_errors(tmp_path):
    x, y = data()
    model = make_model()
    with pytest.raises(ConfigError, match="checkpoint_every needs checkpoint_dir"):
        model.fit(x, y, verbose=0, checkpoint_every=5)
    with pytest.raises(ConfigError, match="checkpoint_every must be a positive integer"):
        model.fit(x, y, verbose=0, checkpoint_dir=tmp_path / "a", checkpoint_every=0)
    with pytest.raises(ConfigError, match=r"need data that can say where it is: .* x is a list"):
        model.fit([(x[:8], y[:8])], verbose=0, checkpoint_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        model.fit(x, y, verbose=0, seed=-1)


def test_pack_and_unpack_keep_tensors_and_integer_keys():
    obj = {"state": {0: {"step": 3, "m": torch.arange(3.0)}}, "groups": [{"lr": 0.1,
                                                                           "betas": (0.9, 0.99)}]}
    tensors = {}
    packed = checkpoint.pack(obj, "opt", tensors)
    restored = checkpoint.unpack(json.loads(json.dumps(packed)), tensors)
    assert restored["state"][0]["step"] == 3
    assert torch.equal(restored["state"][0]["m"], torch.arange(3.0))
    assert restored["groups"] == [{"lr": 0.1, "betas": [0.9, 0.99]}]


# -- streamed data ----------------------------------------------------------------------------
class RandomBatches:
    """Batches that can say where they are, as torch's stateful loaders do: a pass of
    ``batches`` batches (endless with None) drawn by the object's own numpy RNG; state_dict()
    holds the RNG's state and the position in the pass."""

    def __init__(self, seed=0, batches=6):
        self.rng, self.batches, self.position = np.random.default_rng(seed), batches, 0

    def __iter__(self):
        while self.batches is None or self.position < self.batches:
            x = self.rng.normal(size=(8, 5, 3)).astype("float32")
            self.position += 1
            yield x, x[:, -1, :1] * 2.0
        self.position = 0

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "position": self.position}

    def load_state_dict(self, state):
        self.rng.bit_generator.state, self.position = state["rng"], state["position"]


def _built():
    """Built up front (a stream has no array to build from at resume), with the same weights."""
    torch.manual_seed(0)
    model = make_model()
    model.build((None, 5, 3))
    return model


@pytest.mark.parametrize("steps_per_epoch, batches", [(None, 6), (4, None)])
def test_a_generator_that_says_where_it_is_resumes_exactly(tmp_path, steps_per_epoch, batches):
    args = dict(epochs=3, verbose=0, steps_per_epoch=steps_per_epoch)
    straight = _built()
    straight.fit(RandomBatches(batches=batches), seed=2, **args)
    crashed = _built()
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(RandomBatches(batches=batches), seed=2, checkpoint_dir=tmp_path / "ck",
                    checkpoint_every=2, callbacks=[CrashAfter(11)], **args)
    info = json.loads((tmp_path / "ck" / "training.json").read_text())
    assert info["step"] > 0  # mid-epoch
    resumed = _built()
    history = resumed.fit(RandomBatches(batches=batches), resume=tmp_path / "ck", **args)
    assert same(weights(straight), weights(resumed))
    assert history.history == straight.history.history


def test_a_plain_generator_is_refused_before_training(tmp_path):
    x, y = data()
    model = make_model()

    def batches():
        yield x[:8], y[:8]

    with pytest.raises(ConfigError, match=r"need data that can say where it is: .* x is a "
                                          r"generator, which cannot"):
        model.fit(batches(), verbose=0, checkpoint_dir=tmp_path / "ck")
    assert not model.built  # refused before a single step


def test_a_format_1_checkpoint_still_resumes(tmp_path):
    """Checkpoints written before the feed had a state stored the epoch's order."""
    x, y = data()
    args = dict(batch_size=8, epochs=2, verbose=0)
    straight = make_model()
    straight.fit(x, y, seed=4, **args)
    crashed = make_model()
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(x, y, seed=4, checkpoint_dir=tmp_path / "ck", checkpoint_every=1,
                    callbacks=[CrashAfter(8)], **args)
    path = tmp_path / "ck" / "training.json"
    info = json.loads(path.read_text())
    assert info["format_version"] == 2 and info["step"] == 1
    info["format_version"], info["order"] = 1, info.pop("feed")["order"]
    path.write_text(json.dumps(info))
    resumed = make_model()
    resumed.fit(x, y, resume=tmp_path / "ck", **args)
    assert same(weights(straight), weights(resumed))
