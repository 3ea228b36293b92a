"""ONNX Runtime's logits for an exported ONNX file: a second runtime beside OpenCV DNN (ship_test).

Usage: VENV/bin/python tests/tools/onnxruntime_logits.py MODEL.onnx BATCH.npy OUT.npy
BATCH is float32 N x 3 x H x W; OUT gets the graph's "logits" output (float32 N x C). Prints the
input and output names and shapes as JSON. Run with scripts/test_tools.sh's venv.
"""
import json
import sys

import numpy as np
import onnxruntime as ort

model, batch, out = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
x = np.load(batch)
(logits,) = session.run(["logits"], {"input": x})
np.save(out, logits.astype(np.float32))
print(json.dumps({"inputs": [i.name for i in session.get_inputs()], "outputs": [o.name for o in session.get_outputs()],
                  "input_shape": [d if isinstance(d, int) else str(d) for d in session.get_inputs()[0].shape],
                  "logits_shape": list(logits.shape), "metadata": sorted(session.get_modelmeta().custom_metadata_map)}))
