"""The benchmark's derived figures (ratios against the goals) and its plain-text report; the measuring is
`sdpose_core.benchmark.speed`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GOALS = {"single_pass_ms_per_person": 10.0, "single_pass_vs_mediapipe": 0.5, "single_pass_vs_3_cycles": 0.45}


def goal_ratios(sdpose: dict[str, Any], cycles: list[int], mediapipe_ms: float | None,
                image_size: Any = None, tinypose_ms: dict[str, float] | None = None) -> dict[str, Any]:
    """Single pass / all cycles per backend and batch, single pass / MediaPipe, single pass / PP-TinyPose at
    the same input size (`tinypose_ms`: "HxW" -> ms/person; only when it has this `image_size`), and the
    goals met or not.

    The goals are judged on the deployment choice, the backend and batch with the fastest single pass:
    its ms/person, its ratio to MediaPipe, and its single pass / 3 cycles (not the lowest ratio over all
    backends, which on a noisy machine would pick noise); the median ratio over all backends is reported too.
    """
    table = sdpose["ms_per_person"]
    last = f"cycles{max(cycles)}"
    ratios: dict[str, Any] = {"single_vs_all_cycles": {}, "single_vs_mediapipe": {}}
    best = min((row["cycles1"], backend, batch) for backend, rows in table.items() for batch, row in rows.items())
    for backend, rows in table.items():
        for batch, row in rows.items():
            ratios["single_vs_all_cycles"][f"{backend} {batch}"] = round(row["cycles1"] / row[last], 3)
            if mediapipe_ms:
                ratios["single_vs_mediapipe"][f"{backend} {batch}"] = round(row["cycles1"] / mediapipe_ms, 3)
    where = f"{best[1]} {best[2]}"
    size_key = "x".join(str(int(v)) for v in image_size) if image_size is not None else None
    tinypose = (tinypose_ms or {}).get(size_key) if size_key else None
    if tinypose:
        ratios["single_vs_tinypose"] = {f"{backend} {batch}": round(row["cycles1"] / tinypose, 3)
                                        for backend, rows in table.items() for batch, row in rows.items()}
        ratios["best_single_vs_tinypose"] = {"best": round(best[0] / tinypose, 3), "where": where,
                                             "tinypose_ms_per_person": tinypose, "input": size_key}
    deployed_ratio = ratios["single_vs_all_cycles"][where]
    median_ratio = round(float(np.median(list(ratios["single_vs_all_cycles"].values()))), 3)
    goals = {
        "single_pass_ms_per_person": {"goal": GOALS["single_pass_ms_per_person"], "best": best[0],
                                      "where": f"{best[1]} {best[2]}",
                                      "met": best[0] <= GOALS["single_pass_ms_per_person"]},
        "single_pass_vs_3_cycles": {"goal": GOALS["single_pass_vs_3_cycles"], "best": deployed_ratio,
                                    "where": f"{where}; median over all backends and batches {median_ratio}",
                                    "met": deployed_ratio <= GOALS["single_pass_vs_3_cycles"]},
    }
    if mediapipe_ms:
        vs_mp = round(best[0] / mediapipe_ms, 3)
        goals["single_pass_vs_mediapipe"] = {"goal": GOALS["single_pass_vs_mediapipe"], "best": vs_mp,
                                             "where": f"{best[1]} {best[2]}",
                                             "met": vs_mp <= GOALS["single_pass_vs_mediapipe"]}
    return {**ratios, "goals": goals}


def _model_lines(label: str, entry: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    cycles = settings["cycles"]
    last = f"cycles{max(cycles)}"
    lines = [f"== {label}: weights {entry['weights']}", ""]
    header = f"{'ms/person':<32}" + "".join(f"{'cycles ' + str(c):>11}" for c in cycles) + f"{'1/' + str(max(cycles)):>8}"
    lines.append(header)
    for title, table in (("wall-clock", entry["sdpose"]["ms_per_person"]),
                         ("process CPU time (all threads; steadier on a busy machine)",
                          entry["sdpose"].get("cpu_ms_per_person"))):
        if not table:
            continue
        lines.append(f"  {title}:")
        for batch in (f"batch{b}" for b in settings["batches"]):
            for backend, rows in table.items():
                row = rows[batch]
                lines.append(f"{backend + ' ' + batch:<32}" + "".join(f"{row[f'cycles{c}']:>11.1f}" for c in cycles)
                             + f"{row['cycles1'] / row[last]:>8.2f}")
    stages = entry.get("stages")
    if stages:
        lines += ["", "where the time goes, process CPU ms/person (each stage timed alone; "
                  "single pass = stem + embed + cycle + head, N cycles add (N-1) x (cycle + head)):"]
        for key, row in stages["ms_per_person"].items():
            parts = "  ".join(f"{name} {ms:.2f}" for name, ms in row.items())
            lines.append(f"  {key:<22} {parts}   stem+embed share of the single pass "
                         f"{stages['stem_share_of_single_pass'][key]:.0%}")
    for backend, why in entry["sdpose"].get("not_timed", {}).items():
        lines.append(f"{backend:<32} {why}")
    lines += ["", "goals (2-core CPU):"]
    for name, goal in entry["ratios"]["goals"].items():
        lines.append(f"  {name:<28} goal <= {goal['goal']:<5} best {goal['best']:<8} ({goal['where']}) "
                     f"{'MET' if goal['met'] else 'not met'}")
    tinypose = entry["ratios"].get("best_single_vs_tinypose")
    if tinypose:
        lines.append(f"  {'single_pass_vs_tinypose':<28} (no goal)  best {tinypose['best']:<8} ({tinypose['where']}; "
                     f"PP-TinyPose {tinypose['input']} {tinypose['tinypose_ms_per_person']:.1f} ms/person)")
    return lines + [""]


def format_report(result: dict[str, Any]) -> str:
    """The benchmark as plain-text tables."""
    env, settings = result["environment"], result["settings"]
    lines = [f"{env['cpu']}; {env['threads']} threads; torch {env['torch']}, "
             f"onnxruntime {env['onnxruntime']}; OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY')}; "
             f"load average before {env['load_average_before']} after {env.get('load_average_after')}",
             f"inputs: {settings['crops']}; medians of {settings['rounds']} rounds (by batch), round-robin", ""]
    for label, entry in result["models"].items():
        lines += _model_lines(label, entry, settings)
    detector, mediapipe = result["detector"], result["mediapipe"]
    if "ms_per_image" in detector:
        ms, passes = detector["ms_per_image"], detector["passes"]
        cpu = detector.get("cpu_ms_per_image", {})
        lines.append(f"person detector ms/image: single pass (tiles=0, flip=False) {ms['single_pass']:.1f} "
                     f"(cpu {cpu.get('single_pass', float('nan')):.1f}); default ({passes['default']} passes) "
                     f"{ms['default']:.1f} (cpu {cpu.get('default', float('nan')):.1f})   [{settings['image']}]")
        if "best" in ms:
            lines.append(f"person detector ms/image: {detector['best_name']} (the studio's default) {ms['best']:.1f} "
                         f"(cpu {cpu.get('best', float('nan')):.1f})")
    else:
        lines.append(f"person detector: {detector['error']}")
    lines.append(f"MediaPipe BlazePose ms/person: {mediapipe['ms_per_person']:.1f} "
                 f"(cpu {mediapipe.get('cpu_ms_per_person', float('nan')):.1f})" if "ms_per_person" in mediapipe
                 else f"MediaPipe: {mediapipe['error']}")
    tinypose = result.get("tinypose", {})
    if "ms_per_person" in tinypose:
        sizes = "; ".join(f"{key} {ms:.1f} (cpu {tinypose['cpu_ms_per_person'][key]:.1f})"
                          for key, ms in tinypose["ms_per_person"].items())
        lines.append(f"PP-TinyPose (ncnn, {tinypose['threads']} thread) ms/person: {sizes}")
    elif tinypose:
        lines.append(f"PP-TinyPose: not timed ({tinypose['error']})")
    primary = settings["primary_model"]
    speedups = result["torch_speedups"]
    lines += ["", f"{primary}: torch single pass speed-ups (time / plain eager; < 1 is faster) and max |heatmap diff|:"]
    for name, diff in speedups["max_abs_heatmap_diff"].items():
        ratios = "  ".join(f"{b} {speedups['ratio_to_plain'][b][name]:.2f}" for b in speedups["ratio_to_plain"])
        native = "   (not native here: bf16 is emulated)" if name in speedups.get("not_native_here", []) else ""
        lines.append(f"  {name:<24} {ratios}   diff {diff:.1e}{native}")
    methods = result["int8_methods"]
    lines += ["", f"{primary}: int8 methods, single pass ms/person and accuracy vs fp32 (default: {methods['default']}):"]
    cpu = methods.get("cpu_ms_per_person", {})
    for name in methods["ms_per_person"][f"batch{settings['batches'][0]}"]:
        speed = "  ".join(f"{b} {row[name]:.1f}" + (f" (cpu {cpu[b][name]:.1f})" if b in cpu else "")
                          for b, row in methods["ms_per_person"].items())
        acc = methods["accuracy"].get(name)
        extra = (f"   max diff {acc['max_abs_diff']:.4f} / peak {acc['heatmap_peak']:.2f}, shift mean "
                 f"{acc['mean_keypoint_shift_px']:.2f} px, {100 * acc['keypoints_within_4px']:.0f}% <= 4 px") if acc else ""
        lines.append(f"  {name:<36} {speed}{extra}")
    auto = result.get("auto_backend")
    if auto:
        lines += ["", f"{primary}: backend=\"auto\" " + (f"could not choose: {auto['error']}" if "error" in auto else
                  "chose " + "; ".join(f"{k}: {v}" for k, v in auto["described"].items())
                  + f"\n  tolerance: {auto['tolerance']}\n" + auto["summary"])]
    return "\n".join(lines + [f"note: {note}" for note in result["notes"]])
