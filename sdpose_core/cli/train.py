"""`sdpose train`: the options of a training run; `sdpose_core.train.recipes` turns them into a TrainConfig."""

from __future__ import annotations

import argparse
import os
from typing import Any

from sdpose_core.cli.common import parse_override


class TrainSetOption(argparse.Action):
    """--train-ann / --train-images / --train-repeat, kept in the order given: they pair up by order
    (`sdpose_core.train.recipes.train_sets_from_options`)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        items = [*getattr(namespace, self.dest, []), (self.const, values)]
        setattr(namespace, self.dest, items)


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (single process, or every rank under torchrun)",
        description="Train an SDPose model with the official recipe (Adam 1e-3, 500-iter linear warm-up, "
        "x0.1 at 2/3 and 13/15 of the epochs). Multi-GPU / multi-node: "
        "torchrun --nproc_per_node=N -m sdpose_core train ... . With --resume RUN_DIR the run's saved "
        "settings are used; options given again override them. Several training sets: repeat "
        "--train-ann A --train-images I [--train-repeat R] (the first pair is the main set). "
        "--time-budget MIN trains for MIN minutes of training time (the lr drops at fractions of the steps "
        "that time holds, estimated from the measured step time), then ends like a finished run.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--recipe", help="a named recipe shipped in sdpose_core/recipes (e.g. demo-default)")
    p.add_argument("--config", help="a JSON file of training settings (TrainConfig fields)")
    p.add_argument("--model", help="variant (sdpose models lists them); default sdpose-t")
    p.add_argument("--train-ann", dest="train_set_options", action=TrainSetOption, const="ann", metavar="ANN",
                   help="COCO/CrowdPose keypoint annotation JSON for training; repeat --train-ann A "
                        "--train-images I pairs (paired by order) to mix several sets, the first is the main set")
    p.add_argument("--train-images", dest="train_set_options", action=TrainSetOption, const="images", metavar="IMAGES",
                   help="folder with the images of the --train-ann of the same position")
    p.add_argument("--train-repeat", dest="train_set_options", action=TrainSetOption, const="repeat", type=int,
                   metavar="R", help="see the --train-ann before it R times per epoch (default 1)")
    p.add_argument("--val-ann", help="annotation JSON for per-epoch validation (GT boxes)")
    p.add_argument("--val-images", help="folder with the validation images")
    p.add_argument("--epochs", type=int, help="number of epochs (default 300)")
    p.add_argument("--out", help="run directory (last.pt, best/, final/, logs)")
    p.add_argument("--batch-size", type=int, help="samples per process (default 64)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--warmup-iters", type=int, help="linear warm-up iterations (default 500)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes (default 2)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--resume", help="run directory or its last.pt to continue from")
    p.add_argument("--cycles", type=int, help="training cycles of the Multi-Cycled Transformer")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="input size; heatmaps are 1/4")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="mixed precision: fp16 + GradScaler on CUDA; bf16 autocast on CPUs with native bf16 "
                        "(avx512_bf16 / amx_bf16) only, fp32 elsewhere (the log says which and why); default on")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--max-steps", type=int, help="stop after this many optimisation steps (smoke tests)")
    p.add_argument("--time-budget", dest="time_budget_min", type=float, metavar="MIN",
                   help="train for MIN minutes of training time (validation not counted; --epochs caps it), "
                        "then validate and write final/; a resumed run continues the budget")
    p.add_argument("--detach-teacher", action="store_true", help="stop gradients through the later cycle")
    p.add_argument("--keypoint-token-weight", type=float,
                   help="weight of the keypoint-token distillation term (default 5e-6; 0 = no distillation)")
    p.add_argument("--visual-token-weight", type=float,
                   help="weight of the visual-token distillation term (default 5e-6; 0 = no distillation)")
    p.add_argument("--heatmap-distill-weight", type=float, help="weight of heatmap MSE to the next cycle")
    add_target_options(p)
    p.add_argument("--init-weights", help="start from these weights (our folder, official .pth, hf://...)")
    p.add_argument("--stem-init", choices=("official", "kaiming"),
                   help="stem conv init: official N(0, 0.001) (default) or kaiming (He, fan_out)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no training augmentation")
    p.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm in eval mode (small batches)")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP on CUDA")
    p.add_argument("--val-flip", action="store_true", help="flip test during validation")
    p.add_argument("--val-every", type=int, help="validate every N epochs (default 1)")
    p.add_argument("--val-every-min", type=float, metavar="N",
                   help="also validate every N minutes of training, inside long epochs (logged as val records)")
    p.add_argument("--save-every", type=int, help="write last.pt every N epochs (default 1)")
    p.add_argument("--save-every-min", type=float, metavar="N",
                   help="also write last.pt every N minutes of training inside an epoch: a SIGKILL then loses at "
                        "most N minutes, and rerunning the command continues from there")
    p.add_argument("--best-metric", choices=("oks", "ap"),
                   help="best/ = the epoch with the highest cycle-1 validation mean OKS (oks, default) or AP (ap)")
    p.add_argument("--keep-last-epochs", type=int, metavar="N",
                   help="also keep the weights of the last N epochs in RUN_DIR/epochs/epoch_NNN/ (default 0: none)")
    p.add_argument("--log-every", type=int, help="log every N iterations (default 10)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (one line per epoch is printed either way)")
    p.add_argument("--override", dest="model_overrides", action="append", type=parse_override,
                   metavar="KEY=VALUE", help="ModelConfig field, e.g. --override dim=96 --override depth=4")
    p.set_defaults(func=cmd_train)


def add_target_options(p: argparse.ArgumentParser) -> None:
    """Opt-in losses and targets that give a strong training signal from the first step (defaults: official)."""
    p.add_argument("--heatmap-loss", choices=("mse", "kl", "fg-mse"),
                   help="per-cycle heatmap term: mse (official, default); kl = KL between spatial softmaxes of "
                        "target and heatmap (temperature --kl-temperature) plus the MSE; fg-mse = MSE with "
                        "pixels above --fg-threshold x the target's peak weighted --fg-weight times")
    p.add_argument("--kl-temperature", type=float, help="kl: softmax(heatmap / T) (default 0.1)")
    p.add_argument("--fg-weight", type=float, help="fg-mse: weight of the foreground pixels (default 10)")
    p.add_argument("--fg-threshold", type=float, help="fg-mse: foreground = target > this x its peak (default 0.1)")
    p.add_argument("--sigma", type=float, help="Gaussian target sigma in heatmap pixels (default 2)")
    p.add_argument("--sigma-start", type=float,
                   help="sigma schedule: start at this sigma and go linearly to --sigma over the first "
                        "--sigma-anneal-fraction of the steps (targets re-encoded per batch)")
    p.add_argument("--sigma-anneal-fraction", type=float, help="share of the run's steps to anneal over (0.3)")
    p.add_argument("--teacher-targets", choices=("pp-tinypose-128x96", "pp-tinypose-256x192"),
                   help="mix PP-TinyPose heatmaps of every augmented crop into the targets (needs pip install "
                        "ncnn and ../shared/teachers/pp_tinypose or $SDPOSE_TEACHERS)")
    p.add_argument("--teacher-target-weight", type=float,
                   help="teacher share of a labelled joint's target, 0..1 (default 0.5; 1 = replace the Gaussian)")
    p.add_argument("--teacher-min-confidence", type=float,
                   help="teacher peak from which its map is used; unlabelled joints then train too (default 0.5)")
    p.add_argument("--confidence-weights", action="store_true", default=None,
                   help="weight each joint's target by its label confidence (keypoint_scores: 1 for human labels, "
                        "the teacher's score for pseudo-labels; sdpose pseudo-label writes them)")
    p.add_argument("--teacher-features", dest="teacher_feature_weight", type=float, metavar="W",
                   help="weight of an MSE from the visual tokens (cycle 1, through a learned projection) to the "
                        "--teacher-targets teacher's last feature map (default off)")
    p.add_argument("--attention-hint", dest="attention_hint_weight", type=float, metavar="W",
                   help="weight of a cross-entropy pulling each keypoint token's attention (first block, cycle 1) "
                        "to the patches around its joint; decays to 0 over --attention-hint-fraction (default off)")
    p.add_argument("--single-cycle-fraction", type=float, metavar="F",
                   help="train cycle 1 alone for the first F of the steps (cheaper), then every cycle with the "
                        "self-distillation terms (default 0: every cycle from the start)")
    p.add_argument("--attention-hint-fraction", type=float,
                   help="share of the run's steps over which the hint fades to 0 (default 0.5)")


def cmd_train(args: argparse.Namespace) -> int:
    from sdpose_core.train.recipes import config_from_options
    from sdpose_core.train.trainer import train

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "argv")}
    result = train(config_from_options(given))
    best = (f"; best/: cycle-1 {result.best_metric} {result.best_value:.4f} at epoch {result.best_epoch}"
            if result.best_value is not None else "")
    best += f" (highest cycle-1 AP {result.best_ap:.4f})" if result.best_ap is not None else ""
    if result.interrupted:
        print(f"interrupted after {result.global_step} step(s); weights so far in {result.final_dir}{best}; "
              f"state saved in {result.run_dir / 'last.pt'}: run the same command again "
              f"(or sdpose train --resume {result.run_dir}) to continue")
        return 0
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"trained {result.epochs_completed} epoch(s), {result.global_step} step(s); "
              f"final weights: {result.final_dir}{best}")
    return 0
