#!/usr/bin/python3
"""Loads an exported tltrain model with plain torch.jit.load and runs it on a raw float32 batch.

   run_exported.py MODEL BATCH.bin N C H W OUT.bin
Writes forward()'s logits as raw float32 to OUT.bin and prints the model's classes and input
size, so the test can check that a Python user sees what tltrain wrote."""
import json
import sys

import numpy as np
import torch

model_path, batch_path, n, c, h, w, out_path = sys.argv[1:8]
m = torch.jit.load(model_path)
x = torch.from_numpy(np.fromfile(batch_path, dtype=np.float32).reshape(int(n), int(c), int(h), int(w)))
with torch.no_grad():
    logits = m(x)
    proba = m.predict_proba(x)
assert torch.allclose(proba, torch.softmax(logits, 1), atol=1e-6), "predict_proba is not softmax(forward)"
logits.contiguous().numpy().astype(np.float32).tofile(out_path)
extra = {"tltrain_model.json": ""}
torch.jit.load(model_path, _extra_files=extra)
meta = json.loads(extra["tltrain_model.json"])
print(json.dumps({"classes": list(m.classes), "input_size": list(m.input_size), "training": m.training,
                  "meta_classes": meta["classes"]}))
