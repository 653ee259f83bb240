"""Data-parallel fit: two processes on localhost (torchrun, gloo) against one process with the
same global batch; a crashed rank fails the run instead of hanging; sharding without processes."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from rnnkit import layers, optimizers
from rnnkit.errors import ConfigError
from rnnkit.models import Sequential
from rnnkit.training import data as _data
from rnnkit.training import distributed

BATCH, WORLD, SAMPLES = 4, 2, 32

_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import torch
    sys.path.insert(0, os.path.dirname(__file__))
    from common import data, make_model
    from rnnkit.callbacks import Callback

    out, mode = sys.argv[1], sys.argv[2]
    rank = int(os.environ["RANK"])

    class Crash(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if mode == "crash" and rank == 1 and batch == 1:
                raise RuntimeError("rank 1 crashed on purpose")

    x, y = data()
    model = make_model()
    history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=2,
                        validation_data=(x[:10], y[:10]), callbacks=[Crash()],
                        strategy=None if mode == "env" else "ddp")
    np.savez(f"{out}/rank{rank}.npz", *model.get_weights(),
             loss=np.array(history.history["loss"]), val=np.array(history.history["val_loss"]))
""").replace("BATCH", str(BATCH))

_COMMON = textwrap.dedent("""
    import numpy as np
    import torch
    from rnnkit import layers, optimizers
    from rnnkit.models import Sequential

    def data():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((SAMPLES, 6, 3)).astype("float32")
        return x, x[:, :, :1].sum(axis=1)

    def make_model():
        torch.manual_seed(0)
        model = Sequential([layers.LSTM(5), layers.Dense(1)])
        model.build((None, 6, 3))
        model.compile(optimizers.SGD(0.1), "mse")
        return model
""").replace("SAMPLES", str(SAMPLES))


def _npz(path) -> dict:
    with np.load(path) as f:  # closes the file (an open NpzFile warns when collected)
        return dict(f)


def _torchrun(tmp_path, script: str, common: tuple[str, str], *args: str, timeout: float = 120):
    """Run ``script`` in WORLD processes under torchrun; the finished CompletedProcess.

    ``--standalone``: torchrun's agent listens on port 0 and hands the port the kernel gave it
    to the processes (they connect to the agent's store, they bind nothing). Picking a free port
    here, closing it and letting torchrun bind it later lost a race now and then against another
    process that took the port in between (issue 18)."""
    (tmp_path / "train.py").write_text(script)
    (tmp_path / f"{common[0]}.py").write_text(common[1])
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", str(WORLD), str(tmp_path / "train.py"), str(tmp_path), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _single_process():
    namespace: dict = {}
    exec(compile(_COMMON, "common", "exec"), namespace)  # the very same data and model
    x, y = namespace["data"]()
    model = namespace["make_model"]()
    history = model.fit(x, y, batch_size=BATCH * WORLD, epochs=2, shuffle=False, verbose=0,
                        validation_data=(x[:10], y[:10]))
    return model.get_weights(), history.history


def test_two_processes_match_one_process_with_the_global_batch(tmp_path, compiled_built):
    done = _torchrun(tmp_path, _SCRIPT, ("common", _COMMON), "ddp")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [_npz(tmp_path / f"rank{r}.npz") for r in range(WORLD)]
    weights, history = _single_process()
    for i, w in enumerate(weights):
        a, b = ranks[0][f"arr_{i}"], ranks[1][f"arr_{i}"]
        assert np.array_equal(a, b)  # DDP: every process took the same steps
        np.testing.assert_allclose(a, w, rtol=0, atol=1e-6)
    for key, ours in (("loss", "loss"), ("val", "val_loss")):
        assert np.array_equal(ranks[0][key], ranks[1][key])  # averaged across processes
        np.testing.assert_allclose(ranks[0][key], history[ours], rtol=1e-5)
    assert done.stdout.count("Epoch 1/2") == 1  # progress from rank 0 only


@pytest.mark.slow
def test_torchrun_environment_is_detected(tmp_path, compiled_built):
    done = _torchrun(tmp_path, _SCRIPT, ("common", _COMMON), "env")
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = (_npz(tmp_path / f"rank{r}.npz") for r in range(WORLD))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_crashed_rank_fails_the_run_quickly(tmp_path, compiled_built):
    # torchrun stops rank 0 when rank 1 exits; a rank 0 left waiting in its all-reduce would
    # hang until the collective timeout (300 s) and overrun this timeout (TimeoutExpired).
    # No wall-clock assertion on top: on a loaded machine startup alone can take a minute.
    assert distributed.DEFAULT_TIMEOUT_S > 240
    done = _torchrun(tmp_path, _SCRIPT, ("common", _COMMON), "crash", timeout=240)
    assert done.returncode != 0
    assert "rank 1 crashed on purpose" in done.stderr


def test_arrays_shard_as_distributed_sampler():
    arrays = _data.ArrayData(np.arange(10)[:, None], np.arange(10))
    parts = [distributed.ShardedArrays(arrays, r, 3, seed=0) for r in range(3)]
    firsts = [torch.cat([b[1] for b in p.batches(2, shuffle=True)]) for p in parts]
    seconds = [torch.cat([b[1] for b in p.batches(2, shuffle=True)]) for p in parts]
    for epoch in (firsts, seconds):  # 10 padded to 12: 4 each, every sample at least once
        assert [len(e) for e in epoch] == [4, 4, 4]
        assert set(torch.cat(epoch).tolist()) == set(range(10))
    assert not all(torch.equal(a, b) for a, b in zip(firsts, seconds))  # reshuffled per epoch
    in_order = [torch.cat([b[1] for b in p.batches(4, shuffle=False)]) for p in parts]
    assert in_order[1].tolist() == [1, 4, 7, 0]  # rank 1 of 3: every 3rd from 1, padded
    assert parts[0].num_batches(3) == 2


def test_iterables_shard_by_turns_dropping_an_incomplete_round():
    batches = list(range(7))
    shards = [list(distributed.ShardedIterable(batches, r, 3)) for r in range(3)]
    assert shards == [[0, 3], [1, 4], [2, 5]]


def test_strategy_errors(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.detect(None) is None
    with pytest.raises(ConfigError, match=r"strategy='ddp': no process group; launch with torchrun"):
        distributed.detect("ddp")
    with pytest.raises(ConfigError, match=r"strategy must be None, 'ddp' .* got 'horovod'"):
        distributed.detect("horovod")
    model = Sequential([layers.LSTM(2), layers.Dense(1)])
    model.compile(optimizers.SGD(0.1), "mse")
    with pytest.raises(ConfigError, match=r"strategy='ddp': no process group"):
        model.fit(np.zeros((4, 3, 1), "float32"), np.zeros((4, 1), "float32"), strategy="ddp")


_TBPTT_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import torch
    sys.path.insert(0, os.path.dirname(__file__))
    from common_tbptt import make_model, series

    out = sys.argv[1]
    x, y = series()
    model = make_model()
    history = model.fit(x, y, tbptt=(3, 6), epochs=2, verbose=0, strategy="ddp")
    np.savez(f"{out}/rank{os.environ['RANK']}.npz", *model.get_weights(),
             loss=np.array(history.history["loss"]))
""")

_TBPTT_COMMON = textwrap.dedent("""
    import numpy as np
    import torch
    from rnnkit import layers, optimizers
    from rnnkit.models import Sequential

    def series():  # 4 series of 12 steps, a target per step
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 12, 3)).astype("float32")
        return x, x[:, :, :1].cumsum(axis=1) * 0.1

    def make_model():
        torch.manual_seed(0)
        model = Sequential([layers.GRU(5, return_sequences=True), layers.Dense(1)])
        model.build((None, None, 3))
        model.compile(optimizers.SGD(0.1), "mse")
        return model
""")


def test_tbptt_under_torchrun_matches_one_process(tmp_path, compiled_built):
    """Two processes, two series each, TBPTT(3, 6) windows carrying the state: the averaged
    gradients give one process's TBPTT on all four series."""
    done = _torchrun(tmp_path, _TBPTT_SCRIPT, ("common_tbptt", _TBPTT_COMMON))
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [_npz(tmp_path / f"rank{r}.npz") for r in range(WORLD)]
    namespace: dict = {}
    exec(compile(_TBPTT_COMMON, "common_tbptt", "exec"), namespace)
    x, y = namespace["series"]()
    model = namespace["make_model"]()
    history = model.fit(x, y, tbptt=(3, 6), epochs=2, verbose=0)
    for i, w in enumerate(model.get_weights()):
        assert np.array_equal(ranks[0][f"arr_{i}"], ranks[1][f"arr_{i}"])
        np.testing.assert_allclose(ranks[0][f"arr_{i}"], w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ranks[0]["loss"], history.history["loss"], rtol=1e-5)
