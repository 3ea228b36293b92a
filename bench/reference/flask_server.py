#!/usr/bin/python3
"""Reference server for bench/serve_bench.sh: the seeds' Flask /predict, on the same exported
model file tltrain serves (torch.jit.load), with PIL decoding and the model's own preprocessing
(torchvision Resize(shorter side) + CenterCrop + Normalize, as the metadata says).

   flask_server.py --model model.pt [--host 127.0.0.1] [--port 8090] [--topk 5] [--optimize]
POST /predict takes a raw image body or multipart field "file"; GET /health."""
import argparse
import io
import json

import torch
from flask import Flask, jsonify, request
from PIL import Image
from torchvision import transforms

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=8090)
ap.add_argument("--topk", type=int, default=5)
ap.add_argument("--optimize", action="store_true",
                help="torch.jit.optimize_for_inference, as tltrain serve does by default (a tuned reference)")
args = ap.parse_args()

extra = {"tltrain_model.json": ""}
model = torch.jit.load(args.model, _extra_files=extra).eval()
meta = json.loads(extra["tltrain_model.json"])
if args.optimize:
    model = torch.jit.optimize_for_inference(torch.jit.freeze(model))
pre = meta["preprocess"]
assert abs(pre["pixel_scale"] - 1 / 255) < 1e-6, "this reference handles 1/255 pixel scaling only"
tf = transforms.Compose([
    transforms.Resize(pre["resize"]),
    transforms.CenterCrop(pre["input_size"]),
    transforms.ToTensor(),
    transforms.Normalize(pre["mean"], pre["std"]),
])
classes = meta["classes"]
k = min(args.topk, len(classes))
app = Flask(__name__)


@app.route("/predict", methods=["POST"])
def predict():
    data = request.files["file"].read() if "file" in request.files else request.get_data()
    if not data:
        return jsonify(error="empty upload"), 400
    try:
        img = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as e:  # noqa: BLE001 - any decode failure is the client's
        return jsonify(error=f"cannot decode image: {e}"), 400
    x = tf(img).unsqueeze(0)
    if pre["color_order"] == "BGR":
        x = x.flip(1)
    with torch.inference_mode():
        p = torch.softmax(model(x), 1)[0]
    prob, idx = p.topk(k)
    return jsonify(predictions=[{"class": classes[i], "index": i, "probability": float(q)}
                                for q, i in zip(prob.tolist(), idx.tolist())])


@app.route("/health")
def health():
    return jsonify(status="ok")


if __name__ == "__main__":
    app.run(host=args.host, port=args.port, threaded=True)
