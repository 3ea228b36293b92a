#!/usr/bin/python3
"""Convert a tltrain model file (TorchScript, from `tltrain export`) to ONNX (docs/model-format.md).

LibTorch's C++ API has no ONNX exporter, so `tltrain export --format onnx` runs this script with
Debian's torch (/usr/bin/python3). The ONNX graph computes the model file's forward: a normalized
float32 N x 3 x H x W batch -> logits N x C. The batch axis is dynamic ("batch"); H and W are the
model's input size. Opset 10 by default: from opset 11 on, Clip (ReLU6) takes its bounds as inputs,
which OpenCV DNN 4.6 (Debian 12) refuses ("node_proto.input_size() == 1"); at 10 they are
attributes, which it and ONNX Runtime both read.

The model file's metadata (tltrain_model.json: classes, preprocessing, head output, threshold)
travels in the ONNX metadata_props under "tltrain_model", as the same JSON text. "classes" also
holds the class names alone (a JSON list), for tools that look only for that. onnx.checker must
pass; the logits are checked by the caller: `tltrain export` runs the file with OpenCV DNN against
the TorchScript model's.

Usage:
  /usr/bin/python3 scripts/export_onnx.py --model MODEL.pt --out MODEL.onnx [--opset 10] [--source-name NAME]
Exit codes: 0 written; 2 bad arguments or input file, or a model the exporter cannot convert; 3 torch or
onnx missing.
"""
import argparse
import json
import os
import sys

from atomic_output import atomic_output

DEFAULT_OPSET = 10


def fail(code, msg):
    print(f"export_onnx: {msg}", file=sys.stderr)
    sys.exit(code)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="tltrain model file (tltrain export --out model.pt)")
    ap.add_argument("--out", required=True, help="ONNX file to write (atomically)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    ap.add_argument("--source-name", default="", help="what messages call the model (default --model): tltrain export "
                    "passes the checkpoint, since --model is its temporary file")
    args = ap.parse_args()
    name = args.source_name or args.model
    try:
        import torch
    except ImportError:
        fail(3, f"{sys.executable} has no torch: install Debian's python3-torch (scripts/setup.sh does)")
    try:
        import onnx
    except ImportError:
        fail(3, f"{sys.executable} has no onnx: install Debian's python3-onnx (scripts/setup.sh does)")

    if not os.path.isfile(args.model):
        fail(2, f"{args.model}: no such file (write one with `tltrain export --checkpoint best.pt --out model.pt`)")
    extra = {"tltrain_model.json": ""}
    try:
        module = torch.jit.load(args.model, map_location="cpu", _extra_files=extra)
    except Exception as e:  # torch raises RuntimeError subclasses with long C++ traces
        fail(2, f"{name}: not a TorchScript file ({str(e).splitlines()[0]})")
    if not extra["tltrain_model.json"]:
        fail(2, f"{name}: no tltrain_model.json inside: not a tltrain model file (tltrain export writes one)")
    meta = json.loads(extra["tltrain_model.json"])
    if meta.get("precision", "fp32") != "fp32":
        fail(2, f"{name}: {meta['precision']} weights; export ONNX from an fp32 model file (tltrain export without --precision)")
    h, w = meta["preprocess"]["input_size"]
    module.eval()
    example = torch.zeros(2, 3, h, w)
    try:
        with atomic_output(args.out, ".onnx") as tmp:
            import warnings
            with warnings.catch_warnings():
                # A ScriptModule has no Python signature to read input names from; we name them ourselves.
                warnings.filterwarnings("ignore", message="no signature found")
                torch.onnx.export(module, (example,), tmp, opset_version=args.opset, input_names=["input"],
                                  output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                                  do_constant_folding=True)
            model = onnx.load(tmp)
            meta["onnx"] = {"opset": args.opset, "input": "input", "output": "logits", "dynamic_axes": ["batch"]}
            for key, value in (("tltrain_model", json.dumps(meta)), ("classes", json.dumps(meta["classes"]))):
                entry = model.metadata_props.add()
                entry.key, entry.value = key, value
            model.producer_name = "tltrain"
            onnx.checker.check_model(model)
            onnx.save(model, tmp)
    except Exception as e:
        fail(2, f"{name}: ONNX export failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    ops = sorted({n.op_type for n in model.graph.node})
    print(json.dumps({"out": args.out, "opset": args.opset, "nodes": len(model.graph.node), "ops": ops,
                      "bytes": os.path.getsize(args.out)}))


if __name__ == "__main__":
    main()
