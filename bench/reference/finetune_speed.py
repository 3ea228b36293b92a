#!/usr/bin/python3
"""The Python side of the training-speed benchmark: a plain eager PyTorch loop fine-tuning
MobileNetV2 with the top 20% of its blocks unfrozen (features.15..18), backbone BatchNorm frozen
(eval mode), head GAP -> Dense 256 relu -> Dense C, SGD lr 1e-4 momentum 0.9, batch 32, the
augmentation of the config (configs/hymenoptera.json: Keras-style affine + flip), on its train
folder.

  bench/reference/finetune_speed.py --weights /work/shared/models/mobilenet_v2_imagenet.pth \
      [--config configs/hymenoptera.json] [--epochs 3] [--batch 32] [--micro 8] \
      [--threads 2] [--workers 2] [--limit N] [--data DIR] [--compile]

--micro N splits each batch into chunks of N with gradient accumulation (loss scaled by the
whole batch: the same gradients while BatchNorm is frozen). --compile (PyTorch 2.x) runs the model
through torch.compile, as a user after speed would, and drops the last partial batch so that no
shape recompiles mid-epoch; its compilation falls in the warm-up batch. Prints one JSON object:
images_per_s is steady-state training throughput over all epochs with the very first batch
left out as warm-up; images_per_s_epochs_after_first is measured as tltrain's log.jsonl does
(images / epoch wall time, loader start included) averaged over epochs 2..E.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recipe as r  # noqa: E402  (same model, block lists and augmentation code)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/hymenoptera.json", help="for data.train, the augmentation and the head")
    p.add_argument("--weights", required=True)
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--data", help="training folder (default: the config's data.train)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--micro", type=int, default=0, help="forward/backward chunk size; 0: the whole batch")
    p.add_argument("--fraction", type=float, default=0.2, help="top share of backbone blocks to train")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="smoke tests: only N training images")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (PyTorch 2.x)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = r.resolve_config(r.load_config(args.config, []))
    classes, samples = r.scan_folder(os.path.abspath(args.data) if args.data else cfg["data"]["train"])
    samples = r.limit_samples(samples, args.limit)
    pre = r.resolve_preprocess(cfg, args.arch)
    loader = torch.utils.data.DataLoader(r.ImageList(samples, r.train_transform(pre, cfg["data"]["augment"])),
                                         batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                         drop_last=args.compile)

    model = r.Classifier(args.arch, args.weights, cfg["model"], len(classes), args.seed)
    cut = r.resolve_cut(model.block_names, ("fraction", args.fraction))
    model.set_trainable(cut)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9)
    forward = torch.compile(model) if args.compile else model

    images = 0
    t_steady = None
    epoch_rates, losses = [], []
    t_all = time.time()
    for epoch in range(args.epochs):
        model.set_training(True, "frozen")  # train mode, frozen blocks and every BN in eval mode
        t_epoch, n_epoch = time.time(), 0
        for x, y, _ in loader:
            opt.zero_grad()
            n = x.shape[0]
            micro = args.micro if 0 < args.micro < n else n
            total = 0.0
            for s in range(0, n, micro):
                loss = F.cross_entropy(forward(x[s:s + micro]), y[s:s + micro], reduction="sum") / n
                loss.backward()
                total += loss.item()
            opt.step()
            losses.append(total)
            n_epoch += n
            if t_steady is None:
                t_steady = time.time()  # the first batch is warm-up
            else:
                images += n
        epoch_rates.append(n_epoch / (time.time() - t_epoch))
    t_end = time.time()
    after_first = epoch_rates[1:] or epoch_rates
    print(json.dumps({
        "images_per_s": images / (t_end - t_steady) if images else 0.0,
        "images_per_s_epochs_after_first": sum(after_first) / len(after_first),
        "epoch_images_per_s": epoch_rates,
        "measured_images": images, "seconds": t_end - t_all,
        "epochs": args.epochs, "batch": args.batch, "micro": args.micro, "threads": args.threads,
        "workers": args.workers, "train_images": len(samples),
        "trainable_blocks": model.block_names[cut:], "final_loss": losses[-1] if losses else None,
        "torch": torch.__version__, "compile": args.compile,
    }))


if __name__ == "__main__":
    main()
