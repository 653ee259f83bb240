"""Data-parallel training with torch.distributed: ``fit`` under ``torchrun --nproc_per_node N``.

Each process holds a full copy of the model wrapped in ``DistributedDataParallel``: gradients are
averaged across processes in backward, so every process takes the same optimizer step.

- Detection: under torchrun (``WORLD_SIZE`` > 1 in the environment) or with
  ``fit(..., strategy="ddp")`` / ``strategy=DDP(timeout_s=...)``. gloo on CPU, nccl on GPU
  (process r uses GPU ``LOCAL_RANK``).
- Data: ``batch_size`` is per process, as in torch DDP: the global batch is batch_size × world size.
  In-memory arrays are split as ``DistributedSampler`` does (pad to a multiple of the world size,
  process r takes every world-size-th sample from r; with shuffle, one permutation seeded by the
  epoch, the same on every process). An iterable of batches must yield the same batches on every
  process: process r trains on batches r, r+W, r+2W, ...; a last incomplete round is dropped so
  every process takes the same number of steps.
- Only rank 0 shows progress and writes checkpoints; the epoch logs (training and validation
  metrics, validation data sharded the same way) are averaged across processes.
- A process that fails makes the others fail instead of hanging: collective operations time out
  after ``timeout_s`` (default 300 s), and torchrun stops the group when one process exits.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ..errors import ConfigError
from . import data as _data

DEFAULT_TIMEOUT_S = 300.0


@dataclass
class DDP:
    """The data-parallel strategy; ``fit(..., strategy=DDP(timeout_s=60))``."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    backend: str | None = None  # None: nccl with a GPU, gloo without
    seed: int = 0  # shuffling seed shared by the processes (DistributedSampler's)
    ddp: DistributedDataParallel | None = field(default=None, repr=False)

    # -- process group ---------------------------------------------------------------------------
    def setup(self) -> DDP:
        if "WORLD_SIZE" not in os.environ and not dist.is_initialized():
            raise ConfigError("strategy='ddp': no process group; launch with torchrun "
                              "--nproc_per_node N script.py (it sets RANK, WORLD_SIZE, "
                              "MASTER_ADDR, MASTER_PORT)")
        if not dist.is_initialized():
            backend = self.backend or ("nccl" if torch.cuda.is_available() else "gloo")
            if backend == "nccl":
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=self.timeout_s))
        return self

    @property
    def rank(self) -> int:
        return dist.get_rank()

    @property
    def world_size(self) -> int:
        return dist.get_world_size()

    @property
    def local_rank(self) -> int:
        return int(os.environ.get("LOCAL_RANK", 0))

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    # -- data ------------------------------------------------------------------------------------
    def shard(self, stream: _data.BatchStream | None) -> _data.BatchStream | None:
        """This process's part of a batch stream (arrays as DistributedSampler, iterables by turns)."""
        if stream is None:
            return None
        if isinstance(stream.source, _data.ArrayData):
            stream.source = ShardedArrays(stream.source, self.rank, self.world_size, self.seed)
        else:
            shards = ResumableShards if _data.is_resumable(stream.source) else ShardedIterable
            stream.source = shards(stream.source, self.rank, self.world_size)
        return stream

    # -- steps -----------------------------------------------------------------------------------
    def forward(self, model, x: Tensor, y: Tensor | None):
        """``model.call_with_mask(x, targets=y)`` through DDP, which averages the gradients."""
        if self.ddp is None:
            model.to(self.device)
            ids = [self.local_rank] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(_TrainForward(model), device_ids=ids)
        x = x.to(self.device)
        return self.ddp(x, None if y is None else y.to(self.device))

    def reduce_logs(self, logs: dict | None) -> dict | None:
        """The logs averaged over the processes (equal sample counts: the global mean)."""
        if not logs:
            return logs
        keys = sorted(logs)
        values = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64,
                              device=self.device)
        dist.all_reduce(values)
        mean = dict(zip(keys, (values / self.world_size).tolist()))
        return {k: mean[k] for k in logs}


class _TrainForward(nn.Module):
    """What DDP wraps: the model's training forward (output and mask), targets for teacher forcing."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, targets: Tensor | None):
        return self.model.call_with_mask(x, targets=targets)


class ShardedArrays(_data.ArrayData):
    """One process's share of in-memory arrays, re-drawn each epoch (DistributedSampler)."""

    def __init__(self, arrays: _data.ArrayData, rank: int, world_size: int, seed: int):
        self.x, self.y, self.sample_weight, self.n = (arrays.x, arrays.y, arrays.sample_weight,
                                                      arrays.n)
        self.sampler = DistributedSampler(range(arrays.n), num_replicas=world_size, rank=rank,
                                          shuffle=True, seed=seed)
        self.epoch = 0

    def order(self, shuffle: bool, pass_index: int = 0) -> Tensor:
        """This process's samples for pass ``pass_index`` (DistributedSampler's epoch)."""
        self.sampler.shuffle = shuffle
        self.sampler.set_epoch(pass_index)
        return torch.tensor(list(self.sampler), dtype=torch.long)

    def batches(self, batch_size: int, shuffle: bool) -> Iterator[_data.Batch]:
        order = self.order(shuffle, self.epoch)
        self.epoch += 1
        for start in range(0, len(order), batch_size):
            part = self.take(order[start:start + batch_size])
            yield part.x, part.y, part.sample_weight

    def num_batches(self, batch_size: int) -> int:
        return -(-self.sampler.num_samples // batch_size)


class ShardedIterable:
    """Batches r, r+W, r+2W, ... of an iterable; a last incomplete round of W is dropped."""

    def __init__(self, source: Iterable, rank: int, world_size: int):
        self.source, self.rank, self.world_size = source, rank, world_size

    def __iter__(self) -> Iterator:
        round_: list = []
        for batch in self.source:
            round_.append(batch)
            if len(round_) == self.world_size:
                yield round_[self.rank]
                round_ = []


class ResumableShards(ShardedIterable):
    """ShardedIterable of a source that says where it is: its state is the source's own (which
    counts every process's batches alike)."""

    def state_dict(self) -> dict:
        return self.source.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state)


def detect(strategy=None) -> DDP | None:
    """The strategy fit runs under: None (one process), or DDP set up from the torchrun env."""
    if strategy is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return DDP().setup()
        return None
    if strategy == "ddp":
        return DDP().setup()
    if isinstance(strategy, DDP):
        return strategy.setup()
    raise ConfigError(f"fit: strategy must be None, 'ddp' or rnnkit.training.distributed.DDP(...), "
                      f"got {strategy!r}")


# -- the calls fit makes (no strategy: unchanged behaviour) ------------------------------------------
def train_forward(model, x: Tensor, y: Tensor | None):
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        return model.call_with_mask(x, targets=y)
    return strategy.forward(model, x, y)


def shard(strategy: DDP | None, stream):
    return stream if strategy is None else strategy.shard(stream)


def reduce_logs(strategy: DDP | None, logs):
    return logs if strategy is None else strategy.reduce_logs(logs)


def chief_only(strategy: DDP | None, value, off=None):
    """``value`` on rank 0 (or without a strategy), ``off`` on the other processes."""
    return value if strategy is None or strategy.is_chief else off
