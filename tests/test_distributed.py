"""DDP: two gloo processes on CPU train like one process on the combined batch."""

import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from dsplug import DeepSupervised
from tests.helpers import make_batch, make_net


def _model():
    torch.manual_seed(0)
    return make_net("unet", classes=2, norm="instance")  # no batch statistics


def _step(ds, x, y):
    opt = torch.optim.SGD(ds.parameters(), lr=0.1)
    module = ds.module if isinstance(ds, DistributedDataParallel) else ds
    loss = module.loss(ds(x, y), y)
    loss.total.backward()
    opt.step()


def _worker(rank, world, init_file, mode, result_path):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        ds = DeepSupervised(_model(), mode, label_mode="multiclass")
        ddp = DistributedDataParallel(ds)  # no find_unused_parameters
        x, y = make_batch("multiclass", 2, batch=4)
        per = x.shape[0] // world
        _step(ddp, x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per])
        if rank == 0:
            torch.save(ds.state_dict(), result_path)
        dist.barrier()  # both ranks done before teardown (gloo aborts on a racing shutdown)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hyb", "seg"])
def test_two_process_step_equals_one_process_on_the_combined_batch(mode, tmp_path):
    result = tmp_path / "ddp.pt"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), mode, str(result)), nprocs=2, join=True)
    torch.manual_seed(0)
    single = DeepSupervised(_model(), mode, label_mode="multiclass")
    before = copy.deepcopy(single.state_dict())
    x, y = make_batch("multiclass", 2, batch=4)
    _step(single, x, y)
    distributed = torch.load(result, weights_only=True)
    changed = 0
    for name, value in single.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-4, atol=1e-6, msg=name)
        changed += not torch.equal(value, before[name])
    assert changed > 0, "the step changed no weight"


def _skip_worker(rank, world, init_file, result_path):
    """Steps whose schedule factor is 0 run the model alone: the wrapper's own parameters get
    no gradient, and DDP (no find_unused_parameters) refuses the next step unless the
    wrapper anchors them with a zero-weighted term."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        ds = DeepSupervised(_model(), "hyb", label_mode="multiclass", schedule="linear")
        ds.set_progress(1.0)  # factor 0: the auxiliary branches are skipped
        ddp = DistributedDataParallel(ds)
        x, y = make_batch("multiclass", 2, batch=2)
        for _ in range(2):
            _step(ddp, x[rank : rank + 1], y[rank : rank + 1])
        own = [p.grad for n, p in ds.named_parameters() if not n.startswith("model.")]
        zero = all(g is not None and bool((g == 0).all()) for g in own)
        if rank == 0:
            torch.save({"own": len(own), "zero": zero}, result_path)
        dist.barrier()  # both ranks done before teardown (gloo aborts on a racing shutdown)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_steps_that_skip_the_auxiliary_branches_train_under_ddp(tmp_path):
    result = tmp_path / "skip.pt"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_skip_worker, args=(2, str(tmp_path / "init"), str(result)), nprocs=2, join=True)
    outcome = torch.load(result, weights_only=True)
    assert outcome["own"] > 0 and outcome["zero"]  # anchored: a gradient of exactly 0
