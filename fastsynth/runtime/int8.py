"""Static int8 quantisation of the exported ONNX denoiser (ONNX Runtime's quantisation tools), and its cache.

The recipe (``RECIPE``; measured on the bundled model, README "int8 on CPU"):

- QDQ format, convolutions only (the time-embedding Gemms, attention MatMuls and norms stay fp32);
- weights int8 per output channel with 7-bit range (``reduce_range``: no int16 saturation in the u8 x s8 kernels
  of CPUs without VNNI, e.g. AVX2-only ones), activations uint8 per tensor, calibrated with the 99.999th
  percentile on the model's own sampler inputs (``fastsynth.runtime.gates.calibration_inputs``);
- the first and the last convolution stay fp32, and so does every convolution whose input, rounded to 8 bits with
  its calibrated scale, has an SQNR below ``min_sqnr_db`` on some calibration batch (on the bundled model: the
  decoder convolutions after a skip concatenation or an upsampling, whose scale is set by the noisy timesteps
  and is far too coarse at the late ones).

A quantised file is only used behind the accuracy gate (``fastsynth.runtime.gates``); the gate's verdict is stored next
to it, one per runtime (ONNX Runtime, OpenVINO), since each runs the int8 graph with its own kernels.
Files live in ``$FASTSYNTH_CACHE/int8/<key>/`` where the key names the weights, the export and the recipe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import require
from ..utils import cache_dir

RECIPE = {
    "version": 2,
    "format": "qdq",
    "op_types": ["Conv"],
    "activations": "uint8 per tensor",
    "weights": "int8 per channel, reduce_range",
    "calibration": {"method": "percentile", "percentile": 99.999},
    "fp32_convs": {"first_and_last": True, "min_sqnr_db": 32.0},
    "calibration_batch": 16,
}


def recipe_key(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]


def int8_dir(model_sha: str, resolution: int, calibration: dict, recipe: dict = RECIPE) -> Path:
    """The cache folder of one quantised model: keyed by the weights, the exported graph (resolution, graph format,
    opset, torch version), the recipe, the calibration inputs and the quantisation tool's version."""
    from importlib.metadata import version

    from .onnx import GRAPH_FORMAT, OPSET

    spec = {"recipe": recipe, "calibration": calibration, "onnxruntime": version("onnxruntime")}
    return (cache_dir() / "int8" / f"{model_sha[:16]}-r{resolution}-g{GRAPH_FORMAT}-opset{OPSET}-"
            f"torch{torch.__version__.split('+')[0]}-q{recipe['version']}-{recipe_key(spec)}")


class _Reader:
    """ONNX Runtime's CalibrationDataReader over denoiser inputs, rebatched to equal batches (the histogram
    calibrators stack batches)."""

    def __init__(self, batches):
        self._it = iter(batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - not used by the calibrators we call
        raise NotImplementedError


def rebatch(inputs: list[tuple], batch: int) -> list[dict]:
    """[(x_t, t, cond), ...] of any batch sizes -> feeds of exactly ``batch`` rows (a short remainder dropped)."""
    x = torch.cat([a[0] for a in inputs]).float()
    t = torch.cat([a[1] for a in inputs]).long()
    c = torch.cat([a[2] for a in inputs]).float()
    n = (x.shape[0] // batch) * batch
    return [{"x_t": x[i:i + batch].numpy(), "t": t[i:i + batch].numpy(), "cond": c[i:i + batch].numpy()}
            for i in range(0, n, batch)]


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantiser logs a warning per tensor it leaves alone (shape tensors, int64 timesteps) on the root
    logger, and writes temporaries into the working folder: both stay out of the user's way."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="fastsynth-int8-") as scratch:
        cwd = os.getcwd()
        os.chdir(scratch)
        try:
            yield Path(scratch)
        finally:
            os.chdir(cwd)
            root.setLevel(old)


def _conv_nodes(model) -> list:
    return [n for n in model.graph.node if n.op_type == "Conv"]


def _conv_input_qparams(qdq_model) -> dict:
    """{conv node name: (fp32 input tensor, scale, zero point)} from a QDQ model (Q -> DQ -> Conv)."""
    from onnx import numpy_helper

    producer = {o: n for n in qdq_model.graph.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in qdq_model.graph.initializer}
    out = {}
    for conv in _conv_nodes(qdq_model):
        dq = producer.get(conv.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[1] not in inits:
            continue
        zp = inits[q.input[2]] if len(q.input) > 2 and q.input[2] in inits else np.zeros((), np.uint8)
        out[conv.name] = (q.input[0], float(inits[q.input[1]]), int(zp))
    return out


def input_sqnr(fp32_path: Path, qparams: dict, feeds: list[dict], threads: int = 1) -> dict:
    """The worst SQNR (dB) over ``feeds`` of 8-bit rounding of each quantised convolution's input: the fp32 model
    with those tensors as extra outputs, each rounded with its calibrated scale and zero point. The worst batch,
    not the pooled energy: a decoder input can be 42 dB at t=999 and 21 dB at t=166 (its scale is set by the
    noisy steps), and the sampler visits both."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(fp32_path))
    names = sorted({v[0] for v in qparams.values()})
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the named tensors
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    scale = {v[0]: v[1:] for v in qparams.values()}
    worst = {n: float("inf") for n in names}
    for feed in feeds:
        for name, x in zip(names, sess.run(names, feed)):
            s, zp = scale[name]
            q = (np.clip(np.round(x / s) + zp, 0, 255) - zp) * s
            sig = float(np.square(x, dtype=np.float64).sum())
            noise = float(np.square(x - q, dtype=np.float64).sum())
            if sig > 0:
                worst[name] = min(worst[name], 10 * np.log10(sig / max(noise, 1e-30)))
    return {conv: round(float(worst[v[0]]), 2) for conv, v in qparams.items()}


def quantize_denoiser(fp32_path: Path, out: Path, calibration: list[tuple], recipe: dict = RECIPE,
                      threads: int | None = None) -> dict:
    """Quantise the ONNX denoiser at ``fp32_path`` to ``out`` (QDQ int8) with ``recipe``, calibrated on
    ``calibration`` ([(x_t, t, cond), ...], the model's own sampler inputs). Returns what was done: the
    convolutions kept in fp32 and why, each quantised input's SQNR."""
    require("onnxruntime", "onnx", "int8 quantisation")
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    threads = threads or torch.get_num_threads()
    feeds = rebatch(calibration, recipe["calibration_batch"])
    if not feeds:
        raise ValueError("no calibration batch: fewer calibration rows than one calibration batch")
    cal = recipe["calibration"]

    def quantize(src: Path, dst: Path, exclude: list[str]):
        quantize_static(str(src), str(dst), _Reader(feeds), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True, op_types_to_quantize=list(recipe["op_types"]),
                        nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": cal["percentile"]})

    out.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_quantizer() as scratch:
        pre = scratch / "pre.onnx"  # ONNX Runtime's recommended pre-processing: shape inference + basic fusions
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        convs = [n.name for n in _conv_nodes(onnx.load(str(pre)))]
        rule = recipe["fp32_convs"]
        ends = [convs[0], convs[-1]] if rule["first_and_last"] and len(convs) > 1 else []
        # first pass: every other convolution quantised, to read its calibrated input scales
        first = scratch / "all.onnx"
        quantize(pre, first, ends)
        sqnr = input_sqnr(pre, _conv_input_qparams(onnx.load(str(first))), feeds, threads)
        low = [c for c in convs if c in sqnr and sqnr[c] < rule["min_sqnr_db"]]
        tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp.onnx")
        quantize(pre, tmp, ends + low)
        os.replace(tmp, out)
    return {"recipe": recipe, "convolutions": len(convs), "fp32_first_last": ends, "fp32_low_sqnr": low,
            "quantised": len(convs) - len(ends) - len(low), "input_sqnr_db": sqnr,
            "calibration_rows": len(feeds) * recipe["calibration_batch"]}
