"""The training loop: single process or torchrun DDP, AMP, resumable bit-for-bit, per-epoch validation.

Run layout (RUN_DIR = config.out):
  last.pt            full training state after every epoch (and when --max-steps stops a run)
  best/              safetensors weights + config.json of the epoch with the best cycle-1 val AP
  final/             the weights at the end of training
  metrics.jsonl, train_iters.csv, train_epochs.csv, tensorboard/, train_config.json
Only rank 0 writes files; every rank trains on its DistributedSampler shard.
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from sdpose_core.data import AugmentConfig, TopDownDataset, collate_topdown
from sdpose_core.data.mixed import build_mixed_dataset
from sdpose_core.errors import ConfigError
from sdpose_core.losses import SDPoseLoss
from sdpose_core.models import build_model, get_config
from sdpose_core.train.config import TrainConfig
from sdpose_core.train.distributed import (
    DistContext,
    ResumableSampler,
    setup_distributed,
    teardown_distributed,
)
from sdpose_core.train.metrics_log import MetricsLogger
from sdpose_core.train.schedule import WarmupStepSchedule
from sdpose_core.train.state import (
    capture_rng_state,
    load_train_state,
    restore_rng_state,
    save_train_state,
    seed_everything,
)
from sdpose_core.train.validate import validate


@dataclass
class TrainResult:
    run_dir: Path
    epochs_completed: int
    global_step: int
    best_ap: float | None
    best_epoch: int | None
    final_dir: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False  # stopped by SIGINT / SIGTERM: last.pt holds the state, rerun to continue


def seed_worker(worker_id: int) -> None:
    """DataLoader worker seeding: numpy/random follow torch's per-worker seed (base seed + worker id),
    which comes from the loader's generator, so workers differ from each other and across epochs but are
    reproducible."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def resolve_amp(config: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype | None, str]:
    """(enabled, dtype, why): fp16 with GradScaler on CUDA; on CPU bf16 autocast only where the CPU has
    native bf16 (`--amp`, the recipes' `"amp": true` and the default alike), else fp32
    (`sdpose_core.precision.resolve_amp`; the reason is printed and kept in train_config.json)."""
    from sdpose_core.precision import resolve_amp as resolve_precision

    if config.amp and device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--amp is not supported on device {device}; use --no-amp")
    choice = resolve_precision(config.amp, device, "training")
    return choice.enabled, choice.dtype, choice.reason


def train_model_overrides(config: TrainConfig) -> dict[str, Any]:
    """ModelConfig overrides of a run (everything but num_keypoints, which the training data decides)."""
    overrides: dict[str, Any] = dict(config.model_overrides)
    if config.image_size is not None:
        overrides["image_size"] = tuple(config.image_size)
        overrides.setdefault("heatmap_size", (config.image_size[0] // 4, config.image_size[1] // 4))
    if config.cycles is not None:
        overrides["cycles"] = config.cycles
    overrides.pop("num_keypoints", None)
    return overrides


def dataset_sizes(model_name: str, overrides: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Crop and heatmap sizes of the model a run builds, for the datasets."""
    model_config = get_config(model_name, **overrides)
    return {"image_size": tuple(model_config.image_size), "heatmap_size": tuple(model_config.heatmap_size)}


def _freeze_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def load_init_weights(model: nn.Module, spec: str) -> None:
    """Start from pretrained weights (strict): our folder, an official .pth, a run's last.pt or hf://org/repo."""
    from sdpose_core.weights.load import load_model

    load_model(spec, into=model)
    model.train()  # load_model hands models back in eval mode


class Trainer:
    """One training run on this process (rank); `run()` trains to the end and returns a TrainResult."""

    def __init__(self, config: TrainConfig, ctx: DistContext) -> None:
        self.config = config
        self.ctx = ctx
        self.device = ctx.device
        self.run_dir = config.run_dir
        self.resume_state = load_train_state(config.resume) if config.resume else None
        seed_everything(config.seed)  # identical on every rank: DDP also broadcasts rank 0's weights

        self.model_overrides = train_model_overrides(config)
        sizes = dataset_sizes(config.model, self.model_overrides)
        sets = config.train_sets()
        if len(sets) == 1 and sets[0].repeat == 1:
            self.train_set = TopDownDataset(
                sets[0].ann, sets[0].images, train=True, **sizes, sigma=config.sigma,
                augment=self._augment_config(), seed=config.seed,
            )
        else:
            self.train_set = build_mixed_dataset(sets, config.seed, **sizes, sigma=config.sigma,
                                                 augment=self._augment_config())
        self.layout = self.train_set.layout
        model = build_model(config.model, num_keypoints=self.layout.num_keypoints, **self.model_overrides)
        self.model_config = model.config
        if config.init_weights and self.resume_state is None:
            load_init_weights(model, config.init_weights)
        model.to(self.device)
        if ctx.is_distributed and config.sync_bn and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.ddp_model: nn.Module = (
            DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if ctx.is_distributed else model
        )
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.schedule = WarmupStepSchedule(
            self.optimizer, config.lr_step_epochs(), config.lr_gamma, config.warmup_iters, config.warmup_ratio
        )
        self.loss_fn = SDPoseLoss(
            keypoint_token_weight=config.keypoint_token_weight, visual_token_weight=config.visual_token_weight,
            detach_teacher=config.detach_teacher, heatmap_distill_weight=config.heatmap_distill_weight,
        )
        self.amp_enabled, self.amp_dtype, self.precision = resolve_amp(config, self.device)
        if ctx.is_main:
            print(f"[sdpose train] precision: {self.precision}", flush=True)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_enabled and self.device.type == "cuda"
        )
        self.val_set = None
        if config.val_ann:
            self.val_set = TopDownDataset(
                config.val_ann, config.val_images, train=False, boxes="gt", **sizes,
                sigma=config.sigma,
            )
        self.logger = MetricsLogger(self.run_dir, enabled=ctx.is_main)
        self.sampler = ResumableSampler(
            self.train_set, ctx, shuffle=True, seed=config.seed, drop_last=config.drop_last
        )
        self.epoch = 0
        self.global_step = 0
        self.step_in_epoch = 0
        self.epoch_samples_seen = 0  # this rank's samples of the current epoch already trained on
        self.best_ap: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        if self.resume_state is not None:
            self._load_state(self.resume_state)

    # ------------------------------------------------------------ set-up helpers
    def _augment_config(self) -> AugmentConfig:
        return AugmentConfig() if self.config.augment else AugmentConfig.disabled()

    # ---------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "epoch_samples_seen": self.epoch_samples_seen,
            "global_step": self.global_step,
            "best_ap": self.best_ap,
            "best_epoch": self.best_epoch,
            "rng": capture_rng_state(),
            "config": self.config.to_dict(),
            "model_config": self.model_config.to_dict(),
            "world_size": self.ctx.world_size,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        if state["model_config"] != self.model_config.to_dict():
            raise ConfigError(
                f"cannot resume {self.config.resume}: it trained model config {state['model_config']}, this run "
                f"builds {self.model_config.to_dict()}; resume with the same --model/--image-size/--cycles"
            )
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.epoch_samples_seen = int(state["epoch_samples_seen"])
        self.global_step = int(state["global_step"])
        self.best_ap = state.get("best_ap")
        self.best_epoch = state.get("best_epoch")
        restore_rng_state(state["rng"])

    def save_last(self) -> None:
        if self.ctx.is_main:
            save_train_state(self.run_dir / "last.pt", self._state())

    def save_weights(self, name: str) -> Path | None:
        if not self.ctx.is_main:
            return None
        from sdpose_core.weights.checkpoint import save_pretrained

        return save_pretrained(self.model, self.run_dir / name)

    # ----------------------------------------------------------------- loop
    def _loader(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(self.epoch_samples_seen)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return DataLoader(
            self.train_set, batch_size=self.config.batch_size, sampler=self.sampler,
            num_workers=self.config.workers, collate_fn=collate_topdown, worker_init_fn=seed_worker,
            generator=generator, pin_memory=self.device.type == "cuda", drop_last=self.config.drop_last,
        )

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        images = batch["image"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True)
        target_weight = batch["target_weight"].to(self.device, non_blocking=True)
        self.schedule.apply(self.epoch, self.global_step)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_enabled):
            outputs = self.ddp_model(images)
        # the loss in float32: token MSEs are ~1e-6-weighted and lose precision in half types
        outputs = [type(o)(o.heatmaps.float(), o.keypoint_tokens.float(), o.visual_tokens.float()) for o in outputs]
        losses = self.loss_fn(outputs, target, target_weight)
        names = list(losses)
        values = torch.stack([losses[name].detach().float() for name in names]).tolist()  # one device sync
        logged = dict(zip(names, values, strict=True))
        if not math.isfinite(logged["loss"]):
            # stop before the update so last.pt keeps the last finite weights
            raise FloatingPointError(
                f"loss became {logged['loss']} at step {self.global_step + 1} (epoch {self.epoch + 1}); "
                "lower --lr, or use --no-amp"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return logged

    def run(self) -> TrainResult:
        config = self.config
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "train_config.json").write_text(
                json.dumps({"train": config.to_dict(), "model": self.model_config.to_dict(),
                            "precision": self.precision}, indent=2)
            )
        with self._stop_on_signals():
            while self.epoch < config.epochs and not self._max_steps_reached() and not self.stop_requested:
                if self._train_epoch():
                    self._end_of_epoch()
                else:  # stopped inside the epoch by max_steps or a signal
                    self.save_last()
        if self.stop_requested:  # no "final" weights for a run that is not finished
            self.save_last()
            self.logger.close()
            return TrainResult(self.run_dir, self.epoch, self.global_step, self.best_ap, self.best_epoch, None,
                               self.history, interrupted=True)
        final_dir = self.save_weights("final")
        self.ctx.barrier()
        self.logger.close()
        return TrainResult(
            self.run_dir, self.epoch, self.global_step, self.best_ap, self.best_epoch, final_dir, self.history
        )

    stop_requested = False

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT / SIGTERM finish the current step, write last.pt and return: a long CPU run can be stopped
        (Ctrl-C, `kill`) and continued later mid-epoch. Single process only: under torchrun the ranks would
        stop at different steps, so there the default handlers stay."""
        if self.ctx.is_distributed or threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            self.stop_requested = True
            print(f"[sdpose train] {signal.Signals(signum).name}: stopping after this step, saving last.pt",
                  flush=True)

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _max_steps_reached(self) -> bool:
        return self.config.max_steps is not None and self.global_step >= self.config.max_steps

    def _train_epoch(self) -> bool:
        """Train until the epoch ends (returns True) or max_steps is reached inside it (False)."""
        config = self.config
        loader = self._loader(self.epoch)
        self.ddp_model.train()
        if config.freeze_bn:
            _freeze_batchnorm(self.ddp_model)
        batches: Any = loader
        if config.progress and self.ctx.is_main:
            from tqdm import tqdm

            batches = tqdm(loader, desc=f"epoch {self.epoch + 1}/{config.epochs}", unit="batch", leave=False)
        batches_left = len(loader)
        sums: dict[str, float] = {}
        count = samples = samples_since_log = 0
        start = last_log = time.perf_counter()
        for batch in batches:
            losses = self.train_step(batch)
            batch_size = int(batch["image"].shape[0])
            self.global_step += 1
            self.step_in_epoch += 1
            self.epoch_samples_seen += batch_size
            count += 1
            samples += batch_size * self.ctx.world_size
            samples_since_log += batch_size * self.ctx.world_size
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            if self.global_step % config.log_every == 0 or count == batches_left:
                now = time.perf_counter()
                record = {
                    "epoch": self.epoch + 1, "step": self.global_step, "lr": self.schedule.last_lrs[0],
                    **losses, "samples_per_s": samples_since_log / max(now - last_log, 1e-9),
                }
                self.logger.log("iter", record, step=self.global_step)
                if hasattr(batches, "set_postfix"):
                    batches.set_postfix(loss=f"{losses['loss']:.3e}", lr=f"{record['lr']:.2e}")
                last_log, samples_since_log = now, 0
            if self._max_steps_reached() or self.stop_requested:
                break
        if hasattr(batches, "close"):
            batches.close()
        elapsed = time.perf_counter() - start
        self._epoch_train_summary = {"train_" + key: value / max(count, 1) for key, value in sums.items()}
        self._epoch_train_summary["train_time_s"] = elapsed
        self._epoch_train_summary["train_samples_per_s"] = samples / max(elapsed, 1e-9)
        if count < batches_left:
            return False
        self.step_in_epoch = self.epoch_samples_seen = 0
        return True

    def _end_of_epoch(self) -> None:
        config = self.config
        epoch_number = self.epoch + 1  # 1-based for people
        record: dict[str, Any] = {"epoch": epoch_number, "step": self.global_step, **self._epoch_train_summary}
        if self.val_set is not None:
            cycles = int(self.model_config.cycles)
            val_columns = [f"val_AP_cycle{c}" for c in range(1, cycles + 1)]
            record.update({name: float("nan") for name in val_columns})
            if epoch_number % config.val_every == 0 or epoch_number == config.epochs:
                metrics = validate(
                    self.model, self.val_set, self.ctx, cycles=cycles, flip=config.val_flip,
                    batch_size=config.val_batch_size, amp_dtype=self.amp_dtype if self.amp_enabled else None,
                )
                if self.ctx.is_main:
                    for cycle, values in metrics.items():
                        record[f"val_AP_cycle{cycle}"] = values["AP"]
                        self.logger.log("val", {"epoch": epoch_number, "cycle": cycle, **values},
                                        step=self.global_step)
                    ap = metrics[1]["AP"]
                    if self.best_ap is None or ap > self.best_ap:
                        self.best_ap, self.best_epoch = ap, epoch_number
                        self.save_weights("best")
        self.epoch += 1
        self.history.append(record)
        self.logger.log("epoch", record, step=self.global_step)
        if epoch_number % config.save_every == 0 or epoch_number == config.epochs or self._max_steps_reached():
            self.save_last()
        if self.ctx.is_main and config.progress:
            shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in record.items()}
            print(f"[sdpose train] {json.dumps(shown)}", flush=True)


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) one run; under torchrun every rank calls this."""
    ctx = setup_distributed(config.device)
    try:
        return Trainer(config, ctx).run()
    finally:
        teardown_distributed(ctx)
