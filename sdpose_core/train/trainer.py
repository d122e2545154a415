"""The training loop: single process or torchrun DDP, AMP, resumable bit-for-bit, per-epoch validation.

Run layout (RUN_DIR = config.out):
  last.pt            full training state after every epoch (and when --max-steps or a signal stops a run)
  best/              safetensors weights + config.json of the epoch with the best cycle-1 val mean OKS
                     (--best-metric ap: AP)
  final/             the weights at the end of training, or when SIGINT / SIGTERM stopped it
  epochs/epoch_NNN/  the weights of the last --keep-last-epochs epochs (none by default)
  metrics.jsonl, train_iters.csv, train_epochs.csv, tensorboard/, train_config.json
Only rank 0 writes files; every rank trains on its DistributedSampler shard.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from sdpose_core.data import AugmentConfig, TopDownDataset, collate_topdown
from sdpose_core.data.mixed import build_mixed_dataset
from sdpose_core.errors import ConfigError
from sdpose_core.losses import SDPoseLoss, make_heatmap_loss
from sdpose_core.models import build_model
from sdpose_core.models.stems import STEM_INITS
from sdpose_core.train.config import TrainConfig
from sdpose_core.train.distributed import (
    DistContext,
    ResumableSampler,
    broadcast_object,
    setup_distributed,
    teardown_distributed,
)
from sdpose_core.train.epoch_summary import BestTracker, epoch_line, validation_columns
from sdpose_core.train.metrics_log import MetricsLogger
from sdpose_core.train.schedule import ESTIMATE_AFTER_STEPS, StepPlan, TimeBudget, WarmupStepSchedule
from sdpose_core.train.setup import (
    dataset_sizes,
    freeze_batchnorm,
    load_init_weights,
    resolve_amp,
    seed_worker,
    train_model_overrides,
)
from sdpose_core.train.signals import stop_on_signals
from sdpose_core.train.state import (
    capture_rng_state,
    load_train_state,
    restore_rng_state,
    save_train_state,
    seed_everything,
)
from sdpose_core.train.targets import BatchTargets
from sdpose_core.train.training_aids import TrainingAids
from sdpose_core.train.validate import validate
from sdpose_core.train.weights_folders import save_epoch_snapshot, save_weights_folder


@dataclass
class TrainResult:
    run_dir: Path
    epochs_completed: int
    global_step: int
    best_ap: float | None
    best_epoch: int | None
    final_dir: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False  # stopped by SIGINT / SIGTERM: final/ holds the weights so far, rerun to continue
    best_metric: str | None = None  # what best/ was chosen on ("oks" or "ap", cycle 1); best_ap: highest AP seen
    best_value: float | None = None  # best/'s value of best_metric (at best_epoch)


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
                augment=self._augment_config(), seed=config.seed, confidence_weights=config.confidence_weights,
            )
        else:
            self.train_set = build_mixed_dataset(sets, config.seed, **sizes, sigma=config.sigma,
                                                 augment=self._augment_config(),
                                                 confidence_weights=config.confidence_weights)
        self.layout = self.train_set.layout
        if config.teacher_targets:  # dense soft targets: the teacher runs on each augmented crop, in the workers
            from sdpose_core.train.teacher_targets import attach_teacher_targets

            attach_teacher_targets(self.train_set, config.teacher_targets, **sizes,
                                   features=config.teacher_feature_weight > 0)
        self.batch_targets = BatchTargets.from_config(config, **sizes)  # None: the dataset's official targets
        model = build_model(config.model, num_keypoints=self.layout.num_keypoints, **self.model_overrides)
        self.model_config = model.config
        if config.stem_init != "official":  # before --init-weights / last.pt, which overwrite it
            STEM_INITS[config.stem_init](model.stem)
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
        self.aids = TrainingAids(config, model, self.device)  # opt-in hints / single-cycle phase (issue 16)
        trainable = [p for p in model.parameters() if p.requires_grad] + self.aids.parameters()
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.loss_fn = SDPoseLoss(
            keypoint_token_weight=config.keypoint_token_weight, visual_token_weight=config.visual_token_weight,
            detach_teacher=config.detach_teacher, heatmap_distill_weight=config.heatmap_distill_weight,
            heatmap_criterion=make_heatmap_loss(config.heatmap_loss, config.kl_temperature, config.fg_weight,
                                                config.fg_threshold),
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
        # the lr follows steps: drops at the milestone epochs' first steps, or at fractions of a budget's total
        per_rank, batch = self.sampler.num_samples, config.batch_size
        self.steps_per_epoch = max(1, per_rank // batch if config.drop_last else math.ceil(per_rank / batch))
        self.plan = StepPlan.for_epochs(config.lr_step_epochs(), self.steps_per_epoch, config.epochs)
        self.schedule = WarmupStepSchedule(self.optimizer, self.plan.drop_steps, config.lr_gamma,
                                           config.warmup_iters, config.warmup_ratio, by="step")
        self.budget = TimeBudget(budget_s=None if config.time_budget_min is None else 60.0 * config.time_budget_min,
                                 val_every_s=None if config.val_every_min is None else 60.0 * config.val_every_min,
                                 save_every_s=None if config.save_every_min is None else 60.0 * config.save_every_min)
        self.samples_seen = 0  # all ranks together
        self.epoch = 0
        self.global_step = 0
        self.step_in_epoch = 0
        self.epoch_samples_seen = 0  # this rank's samples of the current epoch already trained on
        self.best = BestTracker(config.best_metric)
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
            **self.aids.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "lr_plan": self.plan.to_dict(),
            "time_budget": self.budget.state_dict(),
            "samples_seen": self.samples_seen,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "epoch_samples_seen": self.epoch_samples_seen,
            "global_step": self.global_step,
            **self.best.to_state(),  # best_metric, best_value, best_epoch, best_ap, best_oks
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
        self.aids.load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        saved_plan = state.get("lr_plan")
        if (self.config.time_budget_min is not None and saved_plan
                and len(saved_plan["drop_steps"]) == len(self.plan.drop_steps)):
            self.plan = StepPlan.from_dict(saved_plan)  # a budget's estimate; without one the epochs decide
            self.schedule.milestones = list(self.plan.drop_steps)
        self.budget.load_state_dict(state.get("time_budget", {}))
        self.samples_seen = int(state.get("samples_seen", 0))
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.epoch_samples_seen = int(state["epoch_samples_seen"])
        self.global_step = int(state["global_step"])
        self.best = BestTracker.from_state(state, self.config.best_metric)
        restore_rng_state(state["rng"])

    def save_last(self) -> None:
        if self.ctx.is_main:
            save_train_state(self.run_dir / "last.pt", self._state())

    def save_weights(self, name: str) -> Path | None:
        if not self.ctx.is_main:
            return None
        return save_weights_folder(self.model, self.run_dir / name)

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
        target, target_weight, target_logged = batch["target"], batch["target_weight"], {}
        total = min(self.plan.total_steps, self.config.max_steps or self.plan.total_steps)
        if self.batch_targets is not None:  # sigma schedule / teacher targets, built here from batch["joints"]
            target, target_weight, target_logged = self.batch_targets(batch, self.global_step, total)
        target = target.to(self.device, non_blocking=True)
        target_weight = target_weight.to(self.device, non_blocking=True)
        self.schedule.apply(self.epoch, self.global_step)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_enabled):
            outputs = self.ddp_model(images, cycles=self.aids.cycles_at(self.global_step, total))
        # the loss in float32: token MSEs are ~1e-6-weighted and lose precision in half types
        outputs = [type(o)(o.heatmaps.float(), o.keypoint_tokens.float(), o.visual_tokens.float()) for o in outputs]
        losses = self.loss_fn(outputs, target, target_weight)
        losses = self.aids.add(losses, outputs, batch, self.global_step, total)
        names = list(losses)
        values = torch.stack([losses[name].detach().float() for name in names]).tolist()  # one device sync
        logged = dict(zip(names, values, strict=True), **target_logged)
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
        with stop_on_signals(self._request_stop, enabled=not self.ctx.is_distributed):
            while (self.epoch < config.epochs and not self._max_steps_reached() and not self.stop_requested
                   and not self._budget_spent()):
                if self._train_epoch():
                    self._end_of_epoch()
                elif self._budget_spent() and not self.stop_requested:  # the time budget ran out in the epoch
                    self._end_of_epoch(partial=True)
                else:  # stopped inside the epoch by max_steps or a signal
                    self.save_last()
        if self.budget.spent and self.ctx.is_main:
            print(f"[sdpose train] time budget of {config.time_budget_min:g} min spent after {self.global_step} "
                  f"step(s), {self.samples_seen} samples", flush=True)
        if self.stop_requested:  # last.pt to continue from; final/ below holds the weights so far
            self.save_last()
        final_dir = self.save_weights("final")  # a resumed run that finishes writes it again
        self.ctx.barrier()
        self.logger.close()
        return TrainResult(
            self.run_dir, self.epoch, self.global_step, self.best.best_ap, self.best.epoch, final_dir, self.history,
            interrupted=self.stop_requested, best_metric=self.best.metric, best_value=self.best.value,
        )

    stop_requested = False

    def _request_stop(self, signal_name: str) -> None:
        """SIGINT / SIGTERM (single process, `stop_on_signals`): end after this step, as a finished run ends."""
        self.stop_requested = True
        print(f"[sdpose train] {signal_name}: stopping after this step, saving last.pt and final/", flush=True)

    def _max_steps_reached(self) -> bool:
        return self.config.max_steps is not None and self.global_step >= self.config.max_steps

    def _agreed(self, flag: bool) -> bool:
        """Rank 0's flag on every rank: each rank's own clock would stop or validate them at different steps."""
        return bool(broadcast_object(self.ctx, flag)) if self.ctx.is_distributed else flag

    def _budget_spent(self) -> bool:
        return self.budget.budget_s is not None and self._agreed(self.budget.spent)

    def _reestimate_plan(self) -> None:
        """With a time budget: the run's total steps from the measured step time (the epochs cap it), the lr
        drops at its fractions (rank 0's estimate on every rank, so all ranks use one lr)."""
        total = self.budget.estimate_total_steps(self.global_step)
        total = broadcast_object(self.ctx, total) if self.ctx.is_distributed else total
        if total is not None:
            cap = self.config.epochs * self.steps_per_epoch
            self.plan.reestimate(self.config.lr_step_fractions, min(total, cap), self.global_step)
            self.schedule.milestones = list(self.plan.drop_steps)

    def _run_validation(self) -> dict[int, dict[str, float]]:
        """Per-cycle validation metrics of the current weights (on rank 0; {} elsewhere)."""
        config = self.config
        metrics = validate(
            self.model, self.val_set, self.ctx, cycles=int(self.model_config.cycles), flip=config.val_flip,
            batch_size=config.val_batch_size, amp_dtype=self.amp_dtype if self.amp_enabled else None,
        )
        self.budget.validated()
        return metrics

    def _validate_mid_epoch(self) -> float:
        """--val-every-min: validate at this step boundary (a "val" record with step and samples seen; best/
        stays with the epoch-end validations). Returns its seconds, which are not training time."""
        began = time.perf_counter()
        self.budget.pause()
        metrics = self._run_validation()
        if self.ctx.is_main:
            for cycle, values in metrics.items():
                self.logger.log("val", {"epoch": self.epoch + 1, "step": self.global_step, "samples_seen":
                                        self.samples_seen, "train_elapsed_s": self.budget.elapsed_s,
                                        "mid_epoch": True, "cycle": cycle, **values}, step=self.global_step)
        self.ddp_model.train()
        if self.config.freeze_bn:
            freeze_batchnorm(self.ddp_model)
        self.budget.start()
        return time.perf_counter() - began

    def _train_epoch(self) -> bool:
        """Train until the epoch ends (returns True) or max_steps is reached inside it (False)."""
        config = self.config
        loader = self._loader(self.epoch)
        self.ddp_model.train()
        if config.freeze_bn:
            freeze_batchnorm(self.ddp_model)
        batches: Any = loader
        if config.progress and self.ctx.is_main:
            from tqdm import tqdm

            batches = tqdm(loader, desc=f"epoch {self.epoch + 1}/{config.epochs}", unit="batch", leave=False)
        batches_left = len(loader)
        sums: dict[str, float] = {}
        count = samples = samples_since_log = 0
        start = last_log = time.perf_counter()
        validation_s = 0.0
        self.budget.start()
        for batch in batches:
            losses = self.train_step(batch)
            batch_size = int(batch["image"].shape[0])
            self.global_step += 1
            self.step_in_epoch += 1
            self.epoch_samples_seen += batch_size
            self.samples_seen += batch_size * self.ctx.world_size
            self.budget.step_done()
            if self.budget.budget_s is not None and self.budget.steps_timed == ESTIMATE_AFTER_STEPS:
                self._reestimate_plan()
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
            if self._max_steps_reached() or self.stop_requested or self._budget_spent():
                break
            if (self.budget.val_every_s is not None and self.val_set is not None and count < batches_left
                    and self._agreed(self.budget.validation_due())):
                validation_s += self._validate_mid_epoch()
            if (self.budget.save_every_s is not None and count < batches_left
                    and self._agreed(self.budget.checkpoint_due())):  # --save-every-min
                self.budget.checkpointed()
                self.budget.pause()  # writing last.pt is not training time
                self.save_last()  # mid-epoch: a rerun continues at this step, as after SIGTERM
                self.budget.start()
        self.budget.pause()
        if hasattr(batches, "close"):
            batches.close()
        elapsed = time.perf_counter() - start - validation_s
        self._epoch_train_summary = {"train_" + key: value / max(count, 1) for key, value in sums.items()}
        self._epoch_train_summary["train_time_s"] = elapsed
        self._epoch_train_summary["train_samples_per_s"] = samples / max(elapsed, 1e-9)
        if count < batches_left:
            return False
        self.step_in_epoch = self.epoch_samples_seen = 0
        if self.budget.budget_s is not None:
            self._reestimate_plan()
        return True

    def _end_of_epoch(self, partial: bool = False) -> None:
        """Validation, logs and last.pt after an epoch; `partial`: the time budget ended the run inside the
        epoch, which stays unfinished in last.pt (a longer budget continues it)."""
        config = self.config
        epoch_number = self.epoch + 1  # 1-based for people
        last = partial or self._budget_spent()  # the time budget ends the run here: validate and save
        record: dict[str, Any] = {"epoch": epoch_number, "step": self.global_step, **self._epoch_train_summary}
        record.update({"samples_seen": self.samples_seen, "train_elapsed_s": self.budget.elapsed_s})
        record["lr"] = self.schedule.last_lrs[0]
        if partial:
            record["partial_epoch"] = True
        if self.val_set is not None:
            cycles = int(self.model_config.cycles)
            record.update({name: float("nan") for name in validation_columns(cycles)})  # AP, AP50, OKS
            if epoch_number % config.val_every == 0 or epoch_number == config.epochs or last:
                metrics = self._run_validation()
                if self.ctx.is_main:
                    for cycle, values in metrics.items():
                        for name in ("AP", "AP50", "OKS"):
                            record[f"val_{name}_cycle{cycle}"] = values[name]
                        self.logger.log("val", {"epoch": epoch_number, "step": self.global_step,
                                                "samples_seen": self.samples_seen,
                                                "train_elapsed_s": self.budget.elapsed_s, "cycle": cycle, **values},
                                        step=self.global_step)
                    if self.best.update(epoch_number, metrics[1]):  # cycle 1 on config.best_metric
                        self.save_weights("best")
        if config.keep_last_epochs and not partial and self.ctx.is_main:
            save_epoch_snapshot(self.model, self.run_dir, epoch_number, config.keep_last_epochs)
        if not partial:
            self.epoch += 1
        self.history.append(record)
        self.logger.log("epoch", record, step=self.global_step)
        if (epoch_number % config.save_every == 0 or epoch_number == config.epochs or self._max_steps_reached()
                or last):
            self.save_last()
        if self.ctx.is_main:  # one line per epoch, with or without the progress bar (which it replaces)
            print(epoch_line(record, config.epochs, int(self.model_config.cycles),
                             self.best if self.val_set is not None else None), flush=True)


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) one run; under torchrun every rank calls this."""
    ctx = setup_distributed(config.device)
    try:
        return Trainer(config, ctx).run()
    finally:
        teardown_distributed(ctx)
