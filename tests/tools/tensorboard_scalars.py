"""The scalars of a TensorBoard log folder as TensorBoard itself reads them (event_file_test).

Usage: VENV/bin/python tests/tools/tensorboard_scalars.py LOGDIR
Prints {"tags": {tag: [[step, value], ...]}, "files": N} as JSON, read by TensorBoard's
EventAccumulator (it checks the framing and CRCs as the TensorBoard UI does). Run with
scripts/test_tools.sh's venv.
"""
import glob
import json
import sys

from tensorboard.backend.event_processing import event_accumulator

logdir = sys.argv[1]
acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
acc.Reload()
tags = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
print(json.dumps({"tags": tags, "files": len(glob.glob(logdir + "/events.out.tfevents.*"))}))
