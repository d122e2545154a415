"""`sdpose train`: the options of a training run; `sdpose_core.train.recipes` turns them into a TrainConfig."""

from __future__ import annotations

import argparse
import os

from sdpose_core.cli.common import parse_override


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (single process, or every rank under torchrun)",
        description="Train an SDPose model with the official recipe (Adam 1e-3, 500-iter linear warm-up, "
        "x0.1 at 2/3 and 13/15 of the epochs). Multi-GPU / multi-node: "
        "torchrun --nproc_per_node=N -m sdpose_core train ... . With --resume RUN_DIR the run's saved "
        "settings are used; options given again override them.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--recipe", help="a named recipe shipped in sdpose_core/recipes (e.g. demo-default)")
    p.add_argument("--config", help="a JSON file of training settings (TrainConfig fields)")
    p.add_argument("--model", help="variant (sdpose models lists them); default sdpose-t")
    p.add_argument("--train-ann", help="COCO/CrowdPose keypoint annotation JSON for training")
    p.add_argument("--train-images", help="folder with the training images")
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
    p.add_argument("--detach-teacher", action="store_true", help="stop gradients through the later cycle")
    p.add_argument("--keypoint-token-weight", type=float,
                   help="weight of the keypoint-token distillation term (default 5e-6; 0 = no distillation)")
    p.add_argument("--visual-token-weight", type=float,
                   help="weight of the visual-token distillation term (default 5e-6; 0 = no distillation)")
    p.add_argument("--heatmap-distill-weight", type=float, help="weight of heatmap MSE to the next cycle")
    p.add_argument("--init-weights", help="start from these weights (our folder, official .pth, hf://...)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no training augmentation")
    p.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm in eval mode (small batches)")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP on CUDA")
    p.add_argument("--val-flip", action="store_true", help="flip test during validation")
    p.add_argument("--val-every", type=int, help="validate every N epochs (default 1)")
    p.add_argument("--save-every", type=int, help="write last.pt every N epochs (default 1)")
    p.add_argument("--log-every", type=int, help="log every N iterations (default 10)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--override", dest="model_overrides", action="append", type=parse_override,
                   metavar="KEY=VALUE", help="ModelConfig field, e.g. --override dim=96 --override depth=4")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from sdpose_core.train.recipes import config_from_options
    from sdpose_core.train.trainer import train

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "argv")}
    result = train(config_from_options(given))
    if result.interrupted:
        print(f"interrupted after {result.global_step} step(s); state saved in {result.run_dir / 'last.pt'}: "
              f"run the same command again (or sdpose train --resume {result.run_dir}) to continue")
        return 0
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"trained {result.epochs_completed} epoch(s), {result.global_step} step(s); "
              f"final weights: {result.final_dir}"
              + (f"; best cycle-1 AP {result.best_ap:.4f} at epoch {result.best_epoch}" if result.best_ap is not None
                 else ""))
    return 0
