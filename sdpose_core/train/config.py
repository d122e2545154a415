"""Training configuration: one flat dataclass that the CLI fills and `last.pt` stores.

Defaults follow the official SDPose configs (mmpose 0.x): Adam lr 1e-3 without weight decay, linear
warm-up over 500 iterations starting at 0.001 x lr, step decay x0.1 at epochs 200 and 260 of 300 (here
expressed as fractions of the run's epochs so short runs keep the same shape), batch 64 per device.
With `time_budget_min` the run trains for that many minutes instead, and the fractions apply to the steps
that time holds (estimated from the measured step time; `sdpose_core.train.schedule`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdpose_core.errors import ConfigError
from sdpose_core.models.config import check_cycles, reject_unknown_fields
from sdpose_core.train.epoch_summary import check_best_metric


@dataclass
class TrainConfig:
    """Everything a training run needs; stored in `last.pt` so a resumed run sees the same settings."""

    out: str
    train_ann: str
    train_images: str
    train_repeat: int = 1  # the main set is seen this many times per epoch (real GT weighted up)
    extra_train_sets: list[dict[str, Any]] = field(default_factory=list)  # [{ann, images, repeat}], mixed in
    model: str = "sdpose-t"
    val_ann: str | None = None
    val_images: str | None = None
    epochs: int = 300
    batch_size: int = 64  # per process (per GPU under torchrun), as mmpose's samples_per_gpu
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    lr_step_fractions: tuple[float, ...] = (200 / 300, 260 / 300)
    lr_gamma: float = 0.1
    workers: int = 2
    seed: int = 0
    resume: str | None = None
    cycles: int | None = None  # None: the variant's default number of cycles
    image_size: tuple[int, int] | None = None  # (H, W); None: the variant's default; heatmaps are 1/4
    model_overrides: dict[str, Any] = field(default_factory=dict)  # extra ModelConfig fields
    amp: bool | None = None  # None/True: fp16 + GradScaler on CUDA, bf16 on CPUs with native bf16 only, else fp32
    device: str = "auto"
    max_steps: int | None = None  # stop after this many optimisation steps in total (tests, smoke runs)
    time_budget_min: float | None = None  # train this many minutes (then end like a finished run); epochs = a cap
    detach_teacher: bool = False
    heatmap_distill_weight: float = 0.0
    keypoint_token_weight: float = 5e-6
    visual_token_weight: float = 5e-6
    init_weights: str | None = None
    stem_init: str = "official"  # "official": convs N(0, 0.001); "kaiming": He init (models.stems.STEM_INITS)
    augment: bool = True
    freeze_bn: bool = False  # BN in eval mode (running statistics, no updates): small batches / DDP tests
    sync_bn: bool = False  # SyncBatchNorm under DDP on CUDA
    sigma: float = 2.0
    # opt-in training signals (issue 16; the defaults are the official loss and targets, sdpose_core.losses)
    heatmap_loss: str = "mse"  # per-cycle heatmap term: "mse" (official), "kl" (softmax KL + MSE), "fg-mse"
    kl_temperature: float = 0.1  # "kl": softmax(heatmap / T)
    fg_weight: float = 10.0  # "fg-mse": weight of pixels above fg_threshold x the target's peak
    fg_threshold: float = 0.1
    sigma_start: float | None = None  # sigma schedule: sigma_start -> sigma over sigma_anneal_fraction of steps
    sigma_anneal_fraction: float = 0.3
    teacher_targets: str | None = None  # "pp-tinypose-128x96" / "pp-tinypose-256x192": teacher heatmaps mixed in
    teacher_target_weight: float = 0.5  # share of the teacher in a labelled joint's target (1 = replace)
    teacher_min_confidence: float = 0.5  # teacher peak from which it counts (unlabelled joints then get weight 1)
    confidence_weights: bool = False  # target weight x each joint's keypoint_scores (teacher-filled joints)
    teacher_feature_weight: float = 0.0  # > 0: visual tokens regress the teacher's last features (feature_hint)
    attention_hint_weight: float = 0.0  # > 0: keypoint-token attention pulled to its joint's patch (attention_hint)
    attention_hint_fraction: float = 0.5  # the hint's weight decays linearly to 0 over this share of the steps
    attention_hint_sigma: float = 0.5  # width of the hint's soft patch target, in patches
    single_cycle_fraction: float = 0.0  # the first share of the steps trains cycle 1 only (no distillation yet)
    val_flip: bool = False
    val_batch_size: int = 32
    val_every: int = 1
    val_every_min: float | None = None  # also validate every N minutes of training time, at a step boundary
    save_every: int = 1  # write last.pt every N epochs (and always at the end / when max_steps stops)
    save_every_min: float | None = None  # also write last.pt every N minutes of training inside an epoch (a kill
    # that no signal handler sees, e.g. the end of a working session, then loses at most that)
    best_metric: str = "oks"  # best/ = the epoch with the highest cycle-1 val "oks" (mean OKS) or "ap"
    keep_last_epochs: int = 0  # also keep the weights of the last N epochs in epochs/epoch_NNN/ (0: none)
    log_every: int = 10
    progress: bool = True
    drop_last: bool = False

    def __post_init__(self) -> None:
        if self.image_size is not None:
            self.image_size = tuple(int(v) for v in self.image_size)  # type: ignore[assignment]
        self.lr_step_fractions = tuple(float(v) for v in self.lr_step_fractions)
        self.validate()

    def validate(self) -> None:
        """Reject settings that cannot work, naming the field."""
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.cycles is not None:
            check_cycles(self.cycles)
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        for name in ("time_budget_min", "val_every_min", "save_every_min"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ConfigError(f"{name} must be a number of minutes > 0, got {value!r}")
        for name in ("val_every", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_repeat < 1:
            raise ConfigError(f"train_repeat must be >= 1, got {self.train_repeat}")
        check_best_metric(self.best_metric)
        from sdpose_core.models.stems import STEM_INITS

        if self.stem_init not in STEM_INITS:
            raise ConfigError(f"stem_init must be one of {', '.join(STEM_INITS)}, got {self.stem_init!r}")
        if not 0 <= self.single_cycle_fraction < 1:
            raise ConfigError(f"single_cycle_fraction must lie in [0, 1), got {self.single_cycle_fraction}")
        if self.keep_last_epochs < 0:
            raise ConfigError(f"keep_last_epochs must be >= 0 (0 keeps none), got {self.keep_last_epochs}")
        from sdpose_core.data.mixed import TrainSet

        for spec in self.extra_train_sets:
            TrainSet.from_dict(spec)
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.image_size is not None and (
            len(self.image_size) != 2 or any(v < 16 or v % 4 for v in self.image_size)
        ):
            raise ConfigError(
                f"image_size must be two numbers H W, each >= 16 and divisible by 4 "
                f"(heatmaps are 1/4 of it); got {self.image_size}"
            )
        if (self.val_ann is None) != (self.val_images is None):
            raise ConfigError("give both --val-ann and --val-images, or neither")
        if any(not 0 < f <= 1 for f in self.lr_step_fractions):
            raise ConfigError(f"lr_step_fractions must lie in (0, 1], got {self.lr_step_fractions}")
        self._validate_targets()

    def _validate_targets(self) -> None:
        from sdpose_core.losses import make_heatmap_loss
        from sdpose_core.train.attention_hint import AttentionHint
        from sdpose_core.train.targets import SigmaSchedule
        from sdpose_core.train.teacher_targets import check_teacher_name

        if self.sigma <= 0:
            raise ConfigError(f"sigma must be > 0, got {self.sigma}")
        try:
            make_heatmap_loss(self.heatmap_loss, self.kl_temperature, self.fg_weight, self.fg_threshold)
        except ValueError as exc:
            raise ConfigError(f"--heatmap-loss: {exc}") from None
        if self.sigma_start is not None:
            SigmaSchedule(self.sigma_start, self.sigma, self.sigma_anneal_fraction)
        if self.teacher_targets is not None:
            check_teacher_name(self.teacher_targets)
        AttentionHint(self.attention_hint_weight, self.attention_hint_fraction, self.attention_hint_sigma)
        if self.teacher_feature_weight < 0:
            raise ConfigError(f"teacher_feature_weight must be >= 0, got {self.teacher_feature_weight}")
        if self.teacher_feature_weight > 0 and self.teacher_targets is None:
            raise ConfigError("--teacher-features needs --teacher-targets NAME: the teacher whose features are hints "
                              "(--teacher-target-weight 0 keeps the Gaussian targets of labelled joints)")
        if not 0 <= self.teacher_target_weight <= 1:
            raise ConfigError(f"teacher_target_weight must lie in [0, 1], got {self.teacher_target_weight}")
        if not 0 <= self.teacher_min_confidence < float("inf"):
            raise ConfigError(f"teacher_min_confidence must be >= 0, got {self.teacher_min_confidence}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lr_step_fractions"] = list(self.lr_step_fractions)
        if self.image_size is not None:
            d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        reject_unknown_fields(cls, d, "training config")
        return cls(**d)

    def train_sets(self) -> list[Any]:
        """The main set and the extra sets as `TrainSet`s (paths with $VARS expanded)."""
        from sdpose_core.data.mixed import TrainSet

        main = TrainSet.from_dict({"ann": self.train_ann, "images": self.train_images, "repeat": self.train_repeat})
        return [main, *(TrainSet.from_dict(d) for d in self.extra_train_sets)]

    def lr_step_epochs(self) -> list[int]:
        """Epoch indices (0-based) from which the next decay applies, scaled to this run's length.

        mmcv's step policy multiplies by gamma once for every milestone <= the current epoch; with
        300 epochs this gives the official milestones 200 and 260.
        """
        return [max(1, round(f * self.epochs)) for f in self.lr_step_fractions]
