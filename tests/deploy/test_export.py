"""ONNX export, the onnxruntime backend, int8 quantization and the benchmark's plumbing."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sdpose_core.deploy.crops import load_real_crops
from sdpose_core.deploy.export import ExportError, check_against_torch, export_onnx, torch_heatmaps
from sdpose_core.deploy.onnx_runtime import META_CONFIG, OnnxPoseModel, read_metadata
from sdpose_core.errors import CheckpointError, ConfigError, DataError
from sdpose_core.models import build_model

TINY = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=32, depth=2, heads=4)


def sensitised_model(name: str = "sdpose-t", seed: int = 0, **overrides) -> nn.Module:
    """A random model whose heatmaps depend on the image. The official init (conv std 0.001, BN 1/0)
    makes the stem's output ~1e-6, so any export would "match" whatever the image path computes;
    He-init convs, non-trivial BN statistics and Xavier-init Linears make the image matter."""
    torch.manual_seed(seed)
    model = build_model(name, **overrides)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.2, 0.6)
            module.bias.data.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_model() -> nn.Module:
    model = sensitised_model(**TINY)
    a, b = (np.random.default_rng(s).standard_normal((1, 3, 64, 48)).astype(np.float32) for s in (1, 2))
    # guard: a model that ignored its input would make every comparison below meaningless; here a wrong
    # image path would move the heatmaps by 100x the export tolerance
    assert np.abs(torch_heatmaps(model, a, 1)[0] - torch_heatmaps(model, b, 1)[0]).max() > 1e-2
    return model


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export_onnx(tiny_model, path, cycles=3, weights_info="UNTRAINED: test weights")
    return path, report


def test_tiny_export_matches_torch_every_cycle(tiny_model, tiny_onnx, shared_data):
    path, report = tiny_onnx
    assert report.output_names == ["heatmaps_cycle1", "heatmaps_cycle2", "heatmaps_cycle3"]
    assert report.max_abs_diff <= 1e-4
    assert any("GT person crops" in name for name in report.checks)  # real crops were part of the check
    crops, _ = load_real_crops((64, 48), limit=5)
    outputs = OnnxPoseModel(path, threads=1)(crops)
    reference = torch_heatmaps(tiny_model, crops, 3)
    assert [o.shape for o in outputs] == [(5, 17, 16, 12)] * 3
    for ours, theirs in zip(outputs, reference, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    # cycles differ from each other, so each output really is its own cycle
    assert np.abs(outputs[0] - outputs[2]).max() > 1e-3


def test_sdpose_t_single_pass_matches_torch(tmp_path, shared_data):
    model = sensitised_model("sdpose-t")
    report = export_onnx(model, tmp_path / "sdpose_t.onnx", real_crops=4)
    assert report.cycles == 1 and report.output_names == ["heatmaps_cycle1"]
    assert report.max_abs_diff <= 1e-4, report.summary()
    assert any("GT person crops" in name for name in report.checks)


def test_export_leaves_the_model_alone(tiny_model, tmp_path):
    model = sensitised_model(**TINY)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "m.onnx", cycles=1, check=False)
    assert model.training  # the exporter flips training flags on what it traces: a copy is traced
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_check_catches_a_graph_that_is_not_the_model(tiny_onnx):
    _, report = tiny_onnx
    other = sensitised_model(seed=1, **TINY)
    with pytest.raises(ExportError, match="differ from torch"):
        check_against_torch(other, report, real_crops=2)


def test_metadata_round_trip(tiny_model, tiny_onnx):
    path, _ = tiny_onnx
    onnx_model = OnnxPoseModel(path, threads=1)
    assert onnx_model.config == tiny_model.config
    assert onnx_model.cycles == 3 and onnx_model.precision == "fp32"
    assert onnx_model.input_size == (64, 48) and onnx_model.heatmap_size == (16, 12)
    assert onnx_model.num_keypoints == 17
    assert onnx_model.weights_info == "UNTRAINED: test weights"
    assert json.loads(read_metadata(path)[META_CONFIG])["dim"] == 32
    assert len(onnx_model(np.zeros((2, 3, 64, 48), np.float32), cycles=2)) == 2
    with pytest.raises(ConfigError, match="exported with 3 cycle"):
        onnx_model(np.zeros((1, 3, 64, 48), np.float32), cycles=4)
    with pytest.raises(DataError, match="expects float32 crops"):
        onnx_model(np.zeros((1, 3, 32, 48), np.float32))


def test_fixed_batch_graph_runs_any_batch(tiny_model, tmp_path):
    report = export_onnx(tiny_model, tmp_path / "fixed.onnx", cycles=1, dynamic_batch=False, real_crops=0)
    onnx_model = OnnxPoseModel(report.path, threads=1)
    assert onnx_model.fixed_batch == 1
    images = np.random.default_rng(3).standard_normal((3, 3, 64, 48)).astype(np.float32)
    np.testing.assert_allclose(onnx_model(images)[0], torch_heatmaps(tiny_model, images, 1)[0], atol=1e-4, rtol=0)


def test_onnx_without_sdpose_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
        torch.onnx.export(nn.Linear(4, 2).eval(), (torch.zeros(1, 4),), str(path), dynamo=False)
    with pytest.raises(CheckpointError, match="no SDPose metadata"):
        OnnxPoseModel(path)
    with pytest.raises(CheckpointError, match="not found"):
        OnnxPoseModel(tmp_path / "missing.onnx")


@pytest.mark.parametrize("method", ["dynamic", "hybrid", "static"])
def test_int8_runs_and_stays_close(tiny_onnx, tmp_path, shared_data, method):
    """Tolerance: on this random (sensitised) model the int8 heatmaps stay within 15% of the fp32 peak and
    keypoint peaks move by at most one heatmap pixel (4 crop px) for 80% of joints. With a model trained
    here briefly the differences were far smaller (mean shift 0.2-0.3 px)."""
    from sdpose_core.deploy.quantize import quantize_int8

    path, _ = tiny_onnx
    report = quantize_int8(path, tmp_path / f"tiny.{method}.onnx", method=method)
    assert report.method == method and "mmpose_coco" in report.check_inputs
    assert (report.calibration is None) == (method == "dynamic")
    assert 0 < report.max_abs_diff <= 0.15 * report.heatmap_peak, report.summary()
    assert report.keypoints_within_4px >= 0.8, report.summary()
    assert report.size_bytes < report.source_size_bytes
    int8 = OnnxPoseModel(report.path, threads=1)
    assert int8.precision == f"int8-{method}" and int8.cycles == 3 and int8.weights_info == "UNTRAINED: test weights"
    outputs = int8(np.zeros((2, 3, 64, 48), np.float32))
    assert [o.shape for o in outputs] == [(2, 17, 16, 12)] * 3


def test_int8_types_follow_the_cpu_and_are_recorded(tiny_onnx, tmp_path, monkeypatch):
    """u8 x s8 only where VNNI / AMX sum the products in 32 bits; elsewhere u8 x u8, which cannot saturate.
    A u8s8 graph on a CPU without VNNI warns (its heatmaps can be far off there)."""
    import onnx

    import sdpose_core.deploy.onnx_runtime as runtime_module
    from sdpose_core.deploy.quantize import default_int8_types, quantize_int8

    assert default_int8_types({"avx2", "fma"}) == "u8u8"
    assert default_int8_types({"avx2", "avx512f", "avx512_vnni"}) == "u8s8"
    assert default_int8_types({"avx2", "avx_vnni"}) == "u8s8"
    path, _ = tiny_onnx
    graphs = {}
    for types in ("u8u8", "u8s8"):
        report = quantize_int8(path, tmp_path / f"tiny.{types}.onnx", method="dynamic", types=types)
        assert report.types == types and types in report.summary()
        graphs[types] = report.path
    # the weights' integer type really differs: uint8 (onnx type 2) vs int8 (3) quantized initializers
    for types, expected in (("u8u8", onnx.TensorProto.UINT8), ("u8s8", onnx.TensorProto.INT8)):
        weight_types = {init.data_type for init in onnx.load(str(graphs[types])).graph.initializer
                        if init.name.endswith("_quantized")}
        assert weight_types == {expected}, (types, weight_types)
    monkeypatch.setattr(runtime_module, "cpu_has_int8_dot", lambda: False)
    with pytest.warns(UserWarning, match="saturate on this CPU"):
        model = OnnxPoseModel(graphs["u8s8"], threads=1)
    assert model.int8_types == "u8s8" and model.notes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert OnnxPoseModel(graphs["u8u8"], threads=1).notes == []
    monkeypatch.setattr(runtime_module, "cpu_has_int8_dot", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert OnnxPoseModel(graphs["u8s8"], threads=1).notes == []
    with pytest.raises(ConfigError, match="unknown int8 types"):
        quantize_int8(path, tmp_path / "x.onnx", method="dynamic", types="s8s8")


def test_int8_rejects_bad_inputs(tiny_onnx, tmp_path):
    from sdpose_core.deploy.quantize import quantize_int8

    path, _ = tiny_onnx
    with pytest.raises(ConfigError, match="unknown int8 method"):
        quantize_int8(path, tmp_path / "x.onnx", method="fp16")
    with pytest.raises(DataError, match="calibration must be crops"):
        quantize_int8(path, tmp_path / "x.onnx", method="static", calibration=np.zeros((4, 3, 32, 32), np.float32))


def test_onnx_evaluation_matches_torch(tiny_model, tiny_onnx, shared_data):
    """An ONNX graph goes through the same dataset loop as torch and scores exactly like it."""
    from sdpose_core.data import TopDownDataset
    from sdpose_core.evaluation import evaluate_predictions
    from sdpose_core.evaluation.loop import predict_dataset

    folder = shared_data / "coco" / "mmpose_coco"
    dataset = TopDownDataset(folder / "person_keypoints.json", folder / "images", train=False,
                             image_size=(64, 48), heatmap_size=(16, 12))
    onnx_results = predict_dataset(OnnxPoseModel(tiny_onnx[0], threads=1), dataset, cycles=2)
    torch_results = predict_dataset(tiny_model, dataset, cycles=2)
    for cycle in (1, 2):
        expected = evaluate_predictions(str(dataset.ann_file), torch_results[cycle])
        scored = evaluate_predictions(str(dataset.ann_file), onnx_results[cycle])
        assert scored["AP"] == pytest.approx(expected["AP"], abs=1e-6)


@pytest.mark.parametrize("flip", [False, True])
def test_dataset_loop_gives_the_same_keypoints_on_torch_and_onnx(tiny_model, tiny_onnx, shared_data, flip):
    """The one dataset loop on real person crops: only the forward differs, so torch and onnxruntime give
    the same keypoints (within what the graphs' float arithmetic differs by), flip test included."""
    from sdpose_core.data import TopDownDataset
    from sdpose_core.evaluation.loop import collect_predictions

    folder = shared_data / "coco" / "mmpose_coco"
    dataset = TopDownDataset(folder / "person_keypoints.json", folder / "images", train=False,
                             image_size=(64, 48), heatmap_size=(16, 12))
    graph = OnnxPoseModel(tiny_onnx[0], threads=1)
    on_onnx = collect_predictions(graph, dataset, cycles=3, flip=flip, decode="argmax", batch_size=8)
    on_torch = collect_predictions(tiny_model, dataset, cycles=3, flip=flip, decode="argmax", batch_size=8)
    assert len(on_onnx.indices) == len(dataset) > 1
    np.testing.assert_array_equal(on_onnx.image_ids, on_torch.image_ids)
    np.testing.assert_array_equal(on_onnx.centers, on_torch.centers)
    for cycle in (1, 2, 3):
        # argmax keypoints: the graph matches torch within the export tolerance, far below a heatmap pixel
        np.testing.assert_allclose(on_onnx.keypoints[cycle], on_torch.keypoints[cycle], atol=1e-3)
    assert not np.allclose(on_torch.keypoints[1], on_torch.keypoints[3])  # the cycles really differ
    with pytest.raises(ConfigError, match="exported with 3 cycle"):
        collect_predictions(graph, dataset, cycles=4)
    with pytest.raises(ConfigError, match="torch models"):
        collect_predictions(graph, dataset, device="cpu")


def test_cpu_speedups_keep_outputs(tiny_model):
    from sdpose_core.deploy.cpu_speedups import prepare_for_cpu

    fast = prepare_for_cpu(tiny_model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert fast.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert any(isinstance(m, nn.BatchNorm2d) for m in tiny_model.modules())  # the original is untouched
    images = np.random.default_rng(4).standard_normal((2, 3, 64, 48)).astype(np.float32)
    np.testing.assert_allclose(torch_heatmaps(fast, images, 2)[1], torch_heatmaps(tiny_model, images, 2)[1],
                               atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="eval mode"):
        from sdpose_core.deploy.cpu_speedups import fold_batchnorm

        fold_batchnorm(sensitised_model(**TINY).train())


@pytest.mark.slow
@pytest.mark.xdist_group("quick_benchmark")  # one worker runs the shared benchmark once
def test_benchmark_quick_returns_every_section(quick_benchmark):  # the run is shared with test_tinypose.py
    from sdpose_core.benchmark.speed import BACKENDS

    result, out = quick_benchmark
    assert json.loads(out.read_text())["settings"]["quick"] is True
    assert set(result) >= {"environment", "settings", "sdpose", "torch_speedups", "int8_methods", "detector",
                           "mediapipe", "ratios", "notes"}
    table = result["sdpose"]["ms_per_person"]
    # bf16 is timed only on CPUs with native bf16; elsewhere the row says "not native here"
    not_timed = result["sdpose"]["not_timed"]
    assert set(table) | set(not_timed) == set(BACKENDS) >= {"torch eager", "onnxruntime fp32", "onnxruntime int8"}
    assert all(why.startswith("not native here") for why in not_timed.values())
    for rows in table.values():
        assert set(rows) == {"batch1", "batch2"}
        assert all(set(row) == {"cycles1", "cycles2", "cycles3"} and min(row.values()) > 0 for row in rows.values())
    assert set(result["ratios"]["goals"]) >= {"single_pass_ms_per_person", "single_pass_vs_3_cycles"}
    [entry] = result["models"].values()
    assert entry["sdpose"] is result["sdpose"] and entry["model_config"]["image_size"] == [128, 96]
    for key, row in entry["stages"]["ms_per_person"].items():
        assert set(row) == {"stem", "embed", "cycle", "head", "decode"} and min(row.values()) > 0, key
        assert 0 < entry["stages"]["stem_share_of_single_pass"][key] < 1
    assert set(result["int8_methods"]["accuracy"]) == {"dynamic", "static", "hybrid", "hybrid, Linear patch embedding"}
    assert set(result["sdpose"]["cpu_ms_per_person"]) == set(table)
    assert "ms_per_image" in result["detector"] or "error" in result["detector"]
    assert "ms_per_person" in result["mediapipe"] or "error" in result["mediapipe"]


def test_benchmark_times_the_embedded_default_and_the_paper_configuration(monkeypatch, tmp_path):
    from sdpose_core.benchmark.models import benchmark_models
    from sdpose_core.weights import load as weights

    monkeypatch.setattr(weights, "EMBEDDED_DEFAULT_DIR", tmp_path / "missing")
    models = benchmark_models()
    assert [tuple(m.config.image_size) for m, _ in models.values()] == [(128, 96), (256, 192)]
    assert [tuple(m.config.heatmap_size) for m, _ in models.values()] == [(32, 24), (64, 48)]
    assert "embedded default" in next(iter(models)) and "not bundled" in next(iter(models.values()))[1]
    # once the default's config.json is there, its configuration is what is timed
    folder = tmp_path / "sdpose-t-default"
    folder.mkdir()
    config = build_model("sdpose-t", image_size=(96, 72), heatmap_size=(24, 18), patch_size=(2, 3)).config
    (folder / "config.json").write_text(json.dumps({"format": "sdpose-studio/1", **config.to_dict()}))
    monkeypatch.setattr(weights, "EMBEDDED_DEFAULT_DIR", folder)
    first, source = next(iter(benchmark_models().values()))
    assert tuple(first.config.image_size) == (96, 72) and "weights are not there" in source
    [(only, _)] = benchmark_models(image_size=(192, 144)).values()
    assert tuple(only.config.heatmap_size) == (48, 36)


def test_predictor_runs_a_bn_folded_copy_with_the_same_outputs(tiny_model):
    from sdpose_core.inference.predictor import Predictor

    image = np.random.default_rng(5).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    boxes = [[5, 5, 60, 100], [30, 10, 50, 90]]
    fast = Predictor(model=tiny_model, detector=None)
    plain = Predictor(model=tiny_model, detector=None, cpu_speedups=False)
    for flip, dynamic in ((False, False), (True, True)):
        a = fast.predict(image, boxes=boxes, cycles=3, flip=flip, dynamic=dynamic, dynamic_tolerance=0.0)
        b = plain.predict(image, boxes=boxes, cycles=3, flip=flip, dynamic=dynamic, dynamic_tolerance=0.0)
        for p, q in zip(a.people, b.people, strict=True):
            for maps_a, maps_b in zip(p.cycle_heatmaps, q.cycle_heatmaps, strict=True):
                np.testing.assert_allclose(maps_a, maps_b, atol=1e-5)
    inference = fast._inference_model()
    assert inference is not tiny_model and not any(isinstance(m, nn.BatchNorm2d) for m in inference.modules())
    assert plain._inference_model() is tiny_model and any(isinstance(m, nn.BatchNorm2d) for m in tiny_model.modules())
    replacement = sensitised_model(seed=1, **TINY)
    fast.model = replacement  # a new model gets a new copy, not the old one's
    assert fast._inference_model() is not inference
    np.testing.assert_allclose(fast.predict(image, boxes=boxes, cycles=1).people[0].cycle_heatmaps[0],
                               Predictor(model=replacement, detector=None, cpu_speedups=False)
                               .predict(image, boxes=boxes, cycles=1).people[0].cycle_heatmaps[0], atol=1e-5)


def test_conv_patch_embedding_gives_the_same_tokens_and_exports_as_a_conv(tiny_model, tmp_path):
    import onnx

    from sdpose_core.deploy.cpu_speedups import ConvPatchEmbed, prepare_for_onnx

    prepared = prepare_for_onnx(tiny_model)
    assert isinstance(prepared.patch_embed, ConvPatchEmbed) and not isinstance(tiny_model.patch_embed, ConvPatchEmbed)
    features = torch.randn(3, 256, 16, 12)
    with torch.inference_mode():
        np.testing.assert_allclose(prepared.patch_embed(features).numpy(), tiny_model.patch_embed(features).numpy(),
                                   atol=1e-5)
    images = np.random.default_rng(6).standard_normal((2, 3, 64, 48)).astype(np.float32)
    report = export_onnx(prepared, tmp_path / "conv.onnx", cycles=2)
    for ours, reference in zip(OnnxPoseModel(report.path)(images), torch_heatmaps(tiny_model, images, 2), strict=True):
        np.testing.assert_allclose(ours, reference, atol=1e-4)
    nodes = [node.op_type for node in onnx.load(str(report.path)).graph.node]
    plain = export_onnx(tiny_model, tmp_path / "plain.onnx", cycles=2, check=False).path
    plain_nodes = [node.op_type for node in onnx.load(str(plain)).graph.node]
    # export prepares the model itself: the plain model's graph has the convolution embedding too
    assert nodes.count("Conv") == plain_nodes.count("Conv")
    assert plain_nodes.count("Conv") == sum(isinstance(m, torch.nn.Conv2d) for m in tiny_model.modules()) + 1
    assert nodes.count("MatMul") == plain_nodes.count("MatMul")
    assert prepare_for_onnx(prepared).patch_embed is not prepared.patch_embed  # a copy; applying twice is fine
