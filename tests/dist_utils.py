"""Run a function in a real multi-process gloo group on 127.0.0.1, for tests of distributed code.

    results = run_two_process(fn, arg1, arg2)   # [fn(0, 2, arg1, arg2), fn(1, 2, arg1, arg2)]

``fn(rank, world_size, *args)`` must be a module-level function (where workers are spawned they import
it) and return something ``torch.save`` can store with ``weights_only`` loading: tensors, numbers,
strings, and lists/tuples/dicts of them. The group is started by
:func:`videozoo.distributed.init_from_env` from torchrun-style environment variables, so that path is
exercised too. On Linux without CUDA the workers are forked (no second import of torch, well under a
second); elsewhere they are spawned, which costs seconds: run all checks of a test module in one call,
from a module-scoped fixture.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["average_gradients", "free_port", "run_two_process", "run_world", "sgd_steps"]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def average_gradients(module: torch.nn.Module) -> None:
    """Average ``.grad`` over ranks in place: what DistributedDataParallel does after ``backward``.

    Used instead of wrapping in DDP because DDP's first construction imports ~900 modules (dynamo, sympy),
    which costs each worker several seconds on a busy machine; the arithmetic is the same.
    """
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= dist.get_world_size()


def sgd_steps(method: torch.nn.Module, batches: list[dict], rows: slice, **forward_kwargs: Any) -> dict:
    """SGD steps (lr 0.5) of ``method`` on ``rows`` of each global batch, gradients averaged over ranks as DDP does.

    Returns each step's loss (averaged over ranks) and gradients and the final state: run on every rank's slice in
    a group and on the whole batch in one process, the two must agree.
    """
    from videozoo.distributed import all_reduce_mean, get_world_size

    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    out: dict = {}
    for step, batch in enumerate(batches):
        optimizer.zero_grad()
        result = method({key: value[rows] for key, value in batch.items()}, **forward_kwargs)
        result["loss"].backward()
        if get_world_size() > 1:
            average_gradients(method)
        out[f"loss{step}"] = all_reduce_mean(result["loss"])
        out[f"grads{step}"] = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
        optimizer.step()
    out["state"] = method.state_dict()
    return out


def _worker(rank: int, world_size: int, port: int, out_dir: str, fn, args: tuple) -> None:
    from videozoo.distributed import init_from_env

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)  # the machine is shared; the tensors are tiny
    torch.manual_seed(rank)  # ranks differ unless fn seeds them, as on real GPUs
    env = init_from_env(backend="gloo")
    assert (env.rank, env.world_size) == (rank, world_size)
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(out_dir) / f"{rank}.pt")
        dist.barrier()  # nobody leaves while another rank may still need it
    finally:
        dist.destroy_process_group()


def _start_method() -> str:
    # fork is safe here: the parent has no process group and no CUDA context; spawn anywhere else
    return "fork" if sys.platform == "linux" and not torch.cuda.is_initialized() else "spawn"


def run_world(fn, *args: Any, world_size: int, timeout: float = 60.0) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes; return the results by rank."""
    if dist.is_initialized():  # forked workers would inherit it instead of starting their own group
        raise RuntimeError("run_world needs a parent process without a process group")
    with tempfile.TemporaryDirectory() as out_dir:
        context = mp.start_processes(
            _worker,
            args=(world_size, free_port(), out_dir, fn, args),
            nprocs=world_size,
            join=False,
            start_method=_start_method(),
        )
        deadline = time.monotonic() + timeout
        while not context.join(timeout=1.0):  # raises if a worker failed, after stopping the others
            if time.monotonic() > deadline:
                for process in context.processes:
                    if process.is_alive():
                        process.terminate()
                raise TimeoutError(f"distributed test workers did not finish within {timeout} s")
        return [torch.load(Path(out_dir) / f"{rank}.pt", weights_only=True) for rank in range(world_size)]


def run_two_process(fn, *args: Any, timeout: float = 60.0) -> list[Any]:
    """:func:`run_world` with two processes."""
    return run_world(fn, *args, world_size=2, timeout=timeout)
