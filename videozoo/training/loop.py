"""The one training engine behind every recipe (CoCLR, CACL, STiCA pretraining) and ``videozoo.finetune``.

A method is any ``nn.Module`` whose ``forward(batch, **schedule_values)`` returns ``{"loss": tensor,
"logs": {name: scalar}}`` (DESIGN.md, "Contracts"). The :class:`Trainer` owns everything around it:
device placement, DDP under ``torchrun``, bf16/fp16 autocast, channels-last-3d, ``torch.compile`` (each
``"auto"`` by default: on for CUDA, off on the CPU, :mod:`videozoo.training.speed`), gradient clipping, LR and
momentum schedules, deterministic data order from persistent DataLoader workers, batches copied to the device
ahead of use, TensorBoard and tqdm, atomic checkpoints and exact resume. Stages of one step, in order: schedules
→ batch on the device (prefetched) → ``batch_transform`` (GPU augmentation) → forward under autocast → backward →
clip → optimizer step → LR scheduler step; then logging and checkpointing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from videozoo.distributed import init_from_env, is_distributed
from videozoo.training.checkpoint import (
    LAST,
    atomic_write_bytes,
    epoch_checkpoint_name,
    load_checkpoint,
    save_checkpoint,
)
from videozoo.training.config import config_to_dict
from videozoo.training.data import DevicePrefetcher, EpochBatchSampler, batches_of_epoch, channels_last_3d
from videozoo.training.monitor import Monitor, scalars_of
from videozoo.training.seeding import (
    PROCESS,
    SeededDataset,
    derive_seed,
    epoch_batches,
    rng_state,
    seed_everything,
    set_rng_state,
)
from videozoo.training.speed import AUTO, resolve_speed

__all__ = ["Trainer"]

log = logging.getLogger("videozoo.training")


class Trainer:
    """Train ``method`` on ``dataset``; :meth:`fit` runs to the end and returns a summary.

    Args:
        method: the method module (see the module docstring); moved to ``device`` by the trainer.
        optimizer: built on ``method.parameters()`` (before or after the trainer moves them).
        dataset: map-style; wrapped in :class:`SeededDataset` unless it already is one.
        batch_size: per process; the global batch is ``batch_size * world_size``.
        lr_schedule: a function progress → multiplier of each group's base LR, or a torch LR scheduler
            stepped after every optimizer step. Progress is the fraction of training done, in [0, 1).
        schedules: ``{"momentum": fn}``: ``method(batch, momentum=fn(progress))`` at every step.
        amp: ``"bf16"`` or ``"fp16"`` autocast (fp16 with a gradient scaler), None for float32, or ``"auto"``.
        channels_last: channels-last-3d memory format for 5-D weights and inputs (faster convs on GPUs), or
            ``"auto"``.
        compile: ``torch.compile`` the (DDP-wrapped) method, or ``"auto"``. ``"auto"`` (the default of all three)
            is resolved once for the device and the method by :func:`~videozoo.training.speed.resolve_speed`: bf16,
            channels-last and compile (for methods whose compiled step is tested) on CUDA, none of them on the
            CPU. The choice is printed at :meth:`fit`, kept in :attr:`speed`, the summary, the checkpoints and the
            run's ``config.json`` (``resolved``, when ``config`` names a ``run_dir``, else beside ``ckpt_dir``).
        batch_transform: ``fn(batch) -> batch`` on the device, after the copy and before the method, without
            gradient (GPU augmentation, e.g. :class:`~videozoo.data.BatchedVideoAugment` on the clips). Its random
            draws come from the trainer's RNGs (checkpointed), so resume stays exact.
        num_workers: DataLoader worker processes, kept alive from epoch to epoch (``persistent_workers``).
        grad_clip: clip the global gradient norm to this value.
        find_unused_parameters, broadcast_buffers: DDP's options. Buffers are not broadcast by default:
            methods keep queues identical on every rank by enqueuing all-gathered keys (MoCo).
        log_dir: TensorBoard directory (rank 0): loss, lr, every ``logs`` scalar, schedules, clips/s.
        log_every: steps between logged points (and between time checks for checkpoints).
        ckpt_dir: where ``last.pt`` goes; resumed from automatically when ``resume`` and present.
        resume: ``True`` (``ckpt_dir/last.pt`` if present), ``False`` (start over), or a checkpoint path.
        ckpt_every_minutes, ckpt_every_steps: checkpoint mid-epoch; every epoch end always checkpoints.
        keep_epoch_checkpoints: also keep ``epoch_NNNN.pt`` for every finished epoch.
        seed: data order, augmentations and the initial RNG state of each rank come from it.
        max_steps: stop after this many steps in all (smoke runs, tests). Schedules still span ``epochs``,
            so the LR at a step never depends on when the run is told to stop.
        on_epoch_end: ``fn(epoch) -> {name: value} | None``, called on every rank after each epoch,
            before its checkpoint; returned values are logged as ``epoch/<name>``.
        config, run_info: stored in checkpoints / used for the model card by :meth:`export`.
    """

    def __init__(
        self,
        *,
        method: nn.Module,
        optimizer: torch.optim.Optimizer,
        dataset: Any,
        batch_size: int,
        epochs: int = 1,
        collate_fn: Callable | None = None,
        num_workers: int = 0,
        lr_schedule: Callable[[float], float] | torch.optim.lr_scheduler.LRScheduler | None = None,
        schedules: Mapping[str, Callable[[float], float]] | None = None,
        device: str | torch.device | None = None,
        amp: Literal["auto", "bf16", "fp16"] | None = AUTO,
        channels_last: bool | Literal["auto"] = AUTO,
        compile: bool | Literal["auto"] = AUTO,
        batch_transform: Callable[[Any], Any] | None = None,
        grad_clip: float | None = None,
        find_unused_parameters: bool = False,
        broadcast_buffers: bool = False,
        log_dir: str | Path | None = None,
        log_every: int = 10,
        progress: bool = True,
        ckpt_dir: str | Path | None = None,
        ckpt_every_minutes: float | None = 30.0,
        ckpt_every_steps: int | None = None,
        keep_epoch_checkpoints: bool = False,
        resume: bool | str | Path = True,
        seed: int = 0,
        max_steps: int | None = None,
        on_epoch_end: Callable[[int], Any] | None = None,
        pin_memory: bool | None = None,
        data_timeout: float = 0.0,
        config: Any = None,
        run_info: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(dataset, torch.utils.data.IterableDataset):
            raise TypeError("the trainer needs a map-style dataset (len and indexing) to order and resume it")
        if isinstance(lr_schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise TypeError("ReduceLROnPlateau needs a metric; step it from on_epoch_end instead")
        env = init_from_env()  # idempotent: recipes may have called it already
        self.rank, self.world_size = env.rank, env.world_size
        self.device = torch.device(device) if device is not None else env.device
        self.method, self.optimizer, self.lr_schedule = method.to(self.device), optimizer, lr_schedule
        self._torch_scheduler = isinstance(lr_schedule, torch.optim.lr_scheduler.LRScheduler)
        self.schedules = dict(schedules or {})
        self.data = dataset if isinstance(dataset, SeededDataset) else SeededDataset(dataset, seed)
        self.batch_size, self.epochs, self.collate_fn, self.num_workers = batch_size, epochs, collate_fn, num_workers
        self.speed = resolve_speed(
            device=self.device, method=method, amp=amp, channels_last=channels_last, compile=compile
        )
        self.amp, self.channels_last, self.compile = self.speed.amp, self.speed.channels_last, self.speed.compile
        self.batch_transform, self.grad_clip = batch_transform, grad_clip
        self.ddp_options = {"find_unused_parameters": find_unused_parameters, "broadcast_buffers": broadcast_buffers}
        self.log_dir, self.log_every, self.progress = log_dir, max(1, log_every), progress
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else None
        self.ckpt_every_minutes, self.ckpt_every_steps = ckpt_every_minutes, ckpt_every_steps
        self.keep_epoch_checkpoints, self.resume, self.seed = keep_epoch_checkpoints, resume, seed
        self.on_epoch_end, self.pin_memory, self.data_timeout = on_epoch_end, pin_memory, data_timeout
        self.config = _plain(config)
        self.run_info = dict(run_info or {})
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        for group in optimizer.param_groups:  # what a callable lr_schedule multiplies; saved with the optimizer
            group.setdefault("initial_lr", group["lr"])
        if self.channels_last:
            for p in self.method.parameters():  # nn.Module.to(memory_format=...) rejects 4-D weights
                if p.dim() == 5:
                    p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
        self.steps_per_epoch = len(self.data) // (batch_size * self.world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.data)} samples make no global batch of {batch_size} x {self.world_size}")
        self.schedule_steps = epochs * self.steps_per_epoch  # progress = step / schedule_steps
        self.total_steps = self.schedule_steps if max_steps is None else min(self.schedule_steps, max_steps)
        self.main = self.rank == 0
        self.epoch = self.step = self.batches_done = 0
        self.resumed_from: Path | None = None

    # -- the run ------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` (or ``max_steps``) are done; returns steps, final loss, time, throughput."""
        self._start()
        self._announce_speed()
        model = self._wrap()
        monitor = Monitor(
            main=self.main,
            total=self.total_steps,
            initial=self.step,
            progress=self.progress,
            log_dir=self.log_dir,
            purge_step=self.step if self.resumed_from else None,
        )
        started = last_log = last_ckpt = time.monotonic()
        loss_sum, n_logged, last_loss, steps_run = torch.zeros((), device=self.device), 0, None, 0
        with self._data() as (sampler, loader):
            while self.step < self.total_steps and self.epoch < self.epochs:
                self.method.train()
                batches = self._epoch_batches()
                sampler.set_epoch(self.epoch, batches[self.batches_done :])
                # the channels-last copy of clips a batch_transform reshapes is made after the transform
                prefetched = DevicePrefetcher(
                    batches_of_epoch(loader, epoch=self.epoch, first=self.batches_done),
                    device=self.device,
                    channels_last=self.channels_last and self.batch_transform is None,
                )
                for batch in prefetched:
                    values = self._before_step()
                    out = self._train_step(model, batch, values)
                    self.step, self.batches_done, steps_run = self.step + 1, self.batches_done + 1, steps_run + 1
                    last_loss = out["loss"].detach().float()
                    loss_sum, n_logged = loss_sum + last_loss, n_logged + 1
                    monitor.advance()
                    final, due = self.step >= self.total_steps, False
                    if self.step % self.log_every == 0 or final:
                        now = time.monotonic()
                        late = self.ckpt_every_minutes is not None and now - last_ckpt >= 60 * self.ckpt_every_minutes
                        mean_loss, due = self._reduce(loss_sum / n_logged, late)
                        self._log(monitor, mean_loss, out.get("logs", {}), values, n_logged / max(now - last_log, 1e-9))
                        loss_sum, n_logged, last_log = torch.zeros_like(loss_sum), 0, now
                    due |= bool(self.ckpt_every_steps) and self.step % self.ckpt_every_steps == 0
                    if final or self.batches_done == len(batches):
                        break  # the checkpoint below covers this step
                    if due:
                        self._checkpoint()
                        last_ckpt = time.monotonic()
                if self.batches_done == len(batches):  # a finished epoch: hook, then checkpoint its end
                    metrics = self.on_epoch_end(self.epoch) if self.on_epoch_end is not None else None
                    monitor.log(self.epoch + 1, scalars_of(metrics or {}), prefix="epoch/")
                    self.epoch, self.batches_done = self.epoch + 1, 0
                self._checkpoint(epoch_end=self.batches_done == 0)
                last_ckpt = time.monotonic()
        monitor.close()
        if is_distributed():
            dist.barrier()  # nobody returns (and exports, or exits) before the last checkpoint is written
        elapsed = time.monotonic() - started
        final_loss = self._reduce(last_loss, False)[0] if last_loss is not None else None
        return {
            "steps": self.step,
            "steps_run": steps_run,
            "epochs_done": self.epoch,
            "final_loss": final_loss,
            "time_s": elapsed,
            "clips_per_s": steps_run * self.batch_size * self.world_size / max(elapsed, 1e-9),
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
            "checkpoint": str(self.ckpt_dir / LAST) if self.ckpt_dir else None,
            "speed": self.speed.as_dict(),
        }

    def export(self, directory: str | Path, **kwargs: Any) -> Path | None:
        """Rank 0 writes ``method.export_backbone()`` with ``videozoo.save_pretrained`` (weights + card).

        The card gets the recipe command from ``run_info`` and the epochs/steps trained unless given in
        ``card=``; other keyword arguments go to :func:`videozoo.save_pretrained` (``metrics``, ...).
        """
        from videozoo.api import save_pretrained

        epochs = round(self.step / self.steps_per_epoch, 2)
        card = {"epochs": epochs, "steps": self.step, **dict(kwargs.pop("card", None) or {})}
        if self.run_info.get("command"):
            card.setdefault("recipe_command", self.run_info["command"])
        path = save_pretrained(self.method.export_backbone(), directory, card=card, **kwargs) if self.main else None
        if is_distributed():
            dist.barrier()
        return path

    # -- stages -------------------------------------------------------------------------------------
    def _start(self) -> None:
        """Resume from ``ckpt_dir/last.pt`` (or the file ``resume`` names) or seed this rank's RNGs."""
        if isinstance(self.resume, (str, Path)):
            path = Path(self.resume)
            if not path.is_file():
                raise FileNotFoundError(f"resume={str(path)!r}: no such checkpoint")
        else:
            path = self.ckpt_dir / LAST if self.ckpt_dir is not None and self.resume else None
        if path is None or not path.is_file():
            seed_everything(derive_seed(self.seed, PROCESS, self.rank))  # ranks differ, as dropout should
            return
        state = load_checkpoint(path)
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None and self._torch_scheduler:
            self.lr_schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state.get("scaler") or {})
        self.epoch, self.step, self.batches_done = state["epoch"], state["step"], state["batches_done"]
        if state.get("world_size") != self.world_size or state.get("batch_size") != self.batch_size:
            warnings.warn(
                f"resuming a run of {state.get('world_size')} x {state.get('batch_size')} clips per step "
                f"with {self.world_size} x {self.batch_size}: the data order will differ",
                stacklevel=3,
            )
        rngs = state.get("rng") or []
        if len(rngs) == self.world_size:
            set_rng_state(rngs[self.rank])
        else:
            seed_everything(derive_seed(self.seed, PROCESS, self.rank, self.step))
        changed = sorted(k for k in (self.config or {}) if (state.get("config") or {}).get(k) != self.config[k])
        if changed and self.main:
            log.warning("resuming with a changed config: %s", ", ".join(changed))
        trained = {k: (state.get("speed") or {}).get(k) for k in ("amp", "channels_last", "compile")}
        now = {k: getattr(self.speed, k) for k in trained}
        if state.get("speed") and trained != now and self.main:  # allowed (another GPU, the CPU), but say so
            log.warning("resuming a run trained with %s under %s", trained, now)
        self.resumed_from = path
        if self.main:
            log.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)

    def _wrap(self) -> nn.Module:
        model = self.method
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids, **self.ddp_options)
        return torch.compile(model) if self.compile else model

    def _epoch_batches(self) -> list[list[int]]:
        self.data.set_epoch(self.epoch)  # for plain data[i]; the loader's keys carry the epoch themselves
        return epoch_batches(
            len(self.data),
            batch_size=self.batch_size,
            seed=self.seed,
            epoch=self.epoch,
            rank=self.rank,
            world_size=self.world_size,
        )

    @contextlib.contextmanager
    def _data(self) -> Iterator[tuple[EpochBatchSampler, torch.utils.data.DataLoader]]:
        """One loader for the whole run: its workers persist, the sampler hands them each epoch's keys."""
        sampler = EpochBatchSampler()
        loader = torch.utils.data.DataLoader(
            self.data,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            timeout=self.data_timeout,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.device.type == "cuda" if self.pin_memory is None else self.pin_memory,
            # its own generator: otherwise creating the iterator draws from the global RNG (resume drift)
            generator=torch.Generator().manual_seed(derive_seed(self.seed, self.epoch)),
        )
        try:
            yield sampler, loader
        finally:
            # persistent workers would otherwise live as long as a traceback that holds their iterator
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()

    def _announce_speed(self) -> None:
        """Apply cuDNN autotuning if chosen; print the resolved settings and add them to ``config.json`` (rank 0)."""
        if self.speed.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True  # process-wide; the batches keep one shape
        if not self.main:
            return
        print(self.speed.describe(), flush=True)
        path = self._run_config()
        if path is None:
            return
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # not parse_config's file: leave it alone
        if not isinstance(payload, dict) or "config" not in payload:
            return
        payload.setdefault("resolved", {})[self.speed.method] = self.speed.as_dict()
        atomic_write_bytes(path, json.dumps(payload, indent=2, default=str).encode() + b"\n")

    def _run_config(self) -> Path | None:
        """``<run_dir>/config.json`` as parse_config writes it: ``config["run_dir"]``, else beside ``ckpt_dir``."""
        run_dir = (self.config or {}).get("run_dir")
        if run_dir:
            return Path(run_dir) / "config.json"
        return self.ckpt_dir.parent / "config.json" if self.ckpt_dir is not None else None

    def _before_step(self) -> dict[str, float]:
        progress = self.step / self.schedule_steps
        if self.lr_schedule is not None and not self._torch_scheduler:
            multiplier = self.lr_schedule(progress)
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * multiplier
        return {name: fn(progress) for name, fn in self.schedules.items()}

    def _train_step(self, model: nn.Module, batch: Any, values: Mapping[str, float]) -> dict[str, Any]:
        if self.batch_transform is not None:
            with torch.no_grad():
                batch = self.batch_transform(batch)
            if self.channels_last:
                batch = channels_last_3d(batch)
        with torch.autocast(
            self.device.type,
            dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16,
            enabled=self.amp is not None,
        ):
            out = model(batch, **values)
        self.scaler.scale(out["loss"]).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(self.method.parameters(), self.grad_clip)
            out.setdefault("logs", {})["grad_norm"] = norm.detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self._torch_scheduler:
            self.lr_schedule.step()
        return out

    # -- bookkeeping --------------------------------------------------------------------------------
    def _reduce(self, loss: torch.Tensor, due: bool) -> tuple[float, bool]:
        """Mean loss over ranks, and whether any rank wants a checkpoint (all must take part in it)."""
        both = torch.stack([loss.float(), torch.tensor(float(due), device=loss.device)])
        if self.world_size > 1:
            dist.all_reduce(both)
        loss_value, any_due = both[0].item() / self.world_size, both[1].item() > 0
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"loss is {loss_value} at step {self.step}; the last checkpoint is intact. "
                "Lower the learning rate, try amp=None, or check the data."
            )
        return loss_value, any_due

    def _checkpoint(self, *, epoch_end: bool = False) -> None:
        if self.ckpt_dir is None:
            return
        rngs = [rng_state()]
        if self.world_size > 1:  # every rank's RNG, so that each continues exactly
            rngs = [None] * self.world_size
            dist.all_gather_object(rngs, rng_state())
        if not self.main:
            return
        state = {
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.lr_schedule.state_dict() if self._torch_scheduler else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "batches_done": self.batches_done,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "config": self.config,
            "rng": rngs,
            "speed": self.speed.as_dict(),
        }
        keep = epoch_end and self.keep_epoch_checkpoints
        copies = [self.ckpt_dir / epoch_checkpoint_name(self.epoch)] if keep else []
        save_checkpoint(self.ckpt_dir / LAST, state, copies=copies)

    def _log(
        self, monitor: Monitor, loss: float, logs: Mapping[str, Any], values: Mapping[str, float], steps_per_s: float
    ) -> None:
        if not self.main:
            return
        clips_per_s = steps_per_s * self.batch_size * self.world_size
        scalars = {
            **values,
            **scalars_of(logs),  # the trainer's loss (mean over ranks and steps) wins
            "loss": loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "clips_per_s": clips_per_s,
            "epoch": self.epoch + self.batches_done / self.steps_per_epoch,
        }
        failures = getattr(self.data.dataset, "num_failures", None)  # videos replaced by videozoo datasets
        if isinstance(failures, int):
            scalars["bad_videos"] = failures
        monitor.log(self.step, scalars, epoch=self.epoch, loss=f"{loss:.4f}", clips_s=f"{clips_per_s:.1f}")


def _plain(config: Any) -> dict[str, Any] | None:
    """A config (dataclass or mapping) as JSON-safe plain types, storable with weights_only loading."""
    if config is None:
        return None
    if not isinstance(config, Mapping):
        return config_to_dict(config)
    return json.loads(json.dumps(dict(config), default=str))


def summary_line(stage: str, summary: dict[str, Any]) -> str:
    """One printable line for a :meth:`Trainer.fit` summary; a stage resumed after it had finished ran no step and
    so has no loss to report."""
    loss = "resumed finished" if summary["final_loss"] is None else f"loss {summary['final_loss']:.4f}"
    return f"[{stage}] {summary['steps']} steps, {loss}, {summary['time_s']:.0f} s"
