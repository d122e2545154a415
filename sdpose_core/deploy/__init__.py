"""The forms a trained model runs in on a CPU: folded torch (`cpu_speedups`), ONNX export (`export`) and its
runtime (`onnx_runtime`), int8 (`quantize`), and the automatic choice among them on this machine (`auto_backend`)."""
