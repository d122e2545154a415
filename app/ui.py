"""The Gradio page.

For now the studio has what the core can already do for real: the model family (parameters and
single-pass GFLOPs, counted live from the models) and scoring a COCO / CrowdPose predictions file.
Image comparison of cycles arrives with trained default weights; nothing here shows random poses.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from sdpose_core.errors import SDPoseError

INTRO = """# SDPose Studio
Multi-Cycled Transformers for human pose (SDPose, CVPR 2024), re-implemented in PyTorch.
**Status:** the model family, losses, training and evaluation are in place. The side-by-side cycle
comparison on images needs trained weights, which are not bundled yet — this page does not draw poses
from untrained models.
"""


def model_family_rows() -> list[list]:
    """One row per variant: parameters and GFLOPs, counted from the models themselves."""
    from sdpose_core.flops import flops_table

    rows = []
    for r in flops_table():
        rows.append([
            r["model"], f"{r['params']:,}", round(r["gflops_single_pass"], 2), r["paper_gflops"],
            round(r["gflops_all_cycles"], 2), r["cycles"],
        ])
    return rows


def score_predictions(ann_file: str | None, preds_file: str | None, dataset: str) -> tuple[list[list], str]:
    """Score an uploaded predictions file against an uploaded annotation file."""
    from sdpose_core.evaluation import eval_preds

    if not ann_file or not preds_file:
        raise gr.Error("Upload both files: the ground-truth annotation JSON and the predictions JSON.")
    try:
        metrics = eval_preds(Path(ann_file), Path(preds_file), dataset)
    except SDPoseError as exc:
        raise gr.Error(str(exc)) from None
    rows = [[k, round(float(v), 5)] for k, v in metrics.items()]
    return rows, json.dumps(metrics, indent=1)


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="SDPose Studio") as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Model family"):
            gr.Markdown(
                "Trainable parameters and multiply-accumulates for one 256x192 person crop, counted by "
                "`sdpose flops` (mmcv rules: attention matrix products not counted, as in the paper)."
            )
            gr.Dataframe(
                value=model_family_rows,
                headers=["model", "params", "GFLOPs (1 pass)", "paper GFLOPs", "GFLOPs (all cycles)", "cycles"],
                interactive=False,
            )
        with gr.Tab("Score predictions"):
            gr.Markdown("COCO keypoint AP (pycocotools rules) or CrowdPose AP (easy / medium / hard).")
            with gr.Row():
                ann = gr.File(label="ground truth (COCO-format JSON)", type="filepath")
                preds = gr.File(label="predictions (COCO results JSON)", type="filepath")
            dataset = gr.Radio(["coco", "crowdpose"], value="coco", label="dataset")
            run = gr.Button("Score", variant="primary")
            table = gr.Dataframe(headers=["metric", "value"], interactive=False)
            raw = gr.Code(language="json", label="metrics.json")
            run.click(score_predictions, [ann, preds, dataset], [table, raw], api_name="score")
    return demo
