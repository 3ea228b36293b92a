#!/usr/bin/python3
"""Python (torch/torchvision) reference of a tltrain run config: the same model, data,
augmentation, stages, optimizers, schedules, losses, early stopping and feature cache as
`tltrain fit --config CONFIG`, written as a plain eager PyTorch program.

  bench/reference/recipe.py --config configs/hymenoptera.json \
      --weights /work/shared/models/mobilenet_v2_imagenet.pth [--arch mobilenet_v2] [--seed N] \
      [--threads 2] [--workers 2] [--micro N] [--limit N] [--set key=value ...] [--json-out FILE]

Run from the repository root (relative paths in the config are taken from the cwd, as tltrain
does). Prints one line per epoch and a final JSON summary on stdout.

Known differences from tltrain (same distributions, not the same random numbers):
  * sample order, augmentation draws and head init come from Python/torch RNGs, not tltrain's
    SampleRng(seed, epoch, index) streams;
  * images are decoded with PIL and resized with PIL bilinear (antialiased); tltrain uses
    OpenCV (INTER_AREA when shrinking >= 2x, else INTER_LINEAR) and may decode JPEGs reduced;
  * the Keras affine step is re-implemented exactly (same matrix, same border modes) with
    torch grid_sample, rounding to 8 bits afterwards as tltrain does.
"""
import argparse
import io
import json
import math
import os
import random
import sys
import time
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms as T

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # never leave __pycache__ in scripts/
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import export_backbone as eb  # noqa: E402  (the SAME block lists as the exported backbones)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}  # tltrain's list (no .gif)
PRESETS = {  # data.normalization presets (src/data/preprocess.cpp): mean, std, bgr, pixel_scale
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], False, 1 / 255),
    "unit": ([0, 0, 0], [1, 1, 1], False, 1 / 255),
    "symmetric": ([0.5] * 3, [0.5] * 3, False, 1 / 255),
    "caffe": ([103.939, 116.779, 123.68], [1, 1, 1], True, 1.0),
}


# ----------------------------------------------------------------------------------------------
# Config: JSON with comments, --set overrides, defaults as in include/tltrain/config/run_config.h


def strip_comments(text):
    out, i, n, in_str = [], 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def apply_override(j, assignment):
    """tltrain's --set a.b[1].c=value: VALUE parsed as JSON when valid, else a string."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set '{assignment}': expected KEY=VALUE")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    tokens, i = [], 0
    while i < len(key):
        if key[i] == "[":
            close = key.index("]", i)
            tokens.append(int(key[i + 1:close]))
            i = close + 1
        else:
            end = min([p for p in (key.find(".", i), key.find("[", i)) if p >= 0] or [len(key)])
            tokens.append(key[i:end])
            i = end
        if i < len(key) and key[i] == ".":
            i += 1
    node = j
    for k, nxt in zip(tokens, tokens[1:] + [None]):
        if nxt is None:
            node[k] = value
        else:
            if isinstance(k, str) and (k not in node or node[k] is None):
                node[k] = {}
            node = node[k]


def load_config(path, sets):
    with open(path) as f:
        j = json.loads(strip_comments(f.read()))
    for s in sets:
        apply_override(j, s)
    return j


def absolute(p):
    return os.path.abspath(p) if p else p


def pair(v, default):
    if v is None:
        return list(default)
    return [float(v[0]), float(v[1])]


def resolve_augment(a):
    a = a or {}
    rrc = a.get("random_resized_crop", True)
    crop = {"enabled": True, "scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3]}
    if isinstance(rrc, bool):
        crop["enabled"] = rrc
    elif isinstance(rrc, dict):
        crop["enabled"] = rrc.get("enabled", True)
        crop["scale"] = pair(rrc.get("scale"), crop["scale"])
        crop["ratio"] = pair(rrc.get("ratio"), crop["ratio"])
    z = a.get("zoom_range")
    zoom = [1.0, 1.0] if z is None else ([1 - z, 1 + z] if isinstance(z, (int, float)) else [float(z[0]), float(z[1])])
    return {
        "crop": crop, "horizontal_flip": a.get("horizontal_flip", True), "vertical_flip": a.get("vertical_flip", False),
        "rotation_range": float(a.get("rotation_range", 0)), "width_shift_range": float(a.get("width_shift_range", 0)),
        "height_shift_range": float(a.get("height_shift_range", 0)), "shear_range": float(a.get("shear_range", 0)),
        "zoom_range": zoom, "fill_mode": a.get("fill_mode", "nearest"), "fill_value": float(a.get("fill_value", 0)),
        "brightness": float(a.get("brightness", 0)), "contrast": float(a.get("contrast", 0)),
        "saturation": float(a.get("saturation", 0)), "hue": float(a.get("hue", 0)),
        "order": a.get("order", ["crop", "affine", "flip", "color"]),
    }


def resolve_trainable(t):
    if t is None or t == "head":
        return ("head", None)
    if t == "all":
        return ("all", None)
    if isinstance(t, dict):
        for k in ("fraction", "blocks", "from"):
            if k in t:
                return (k, t[k])
    raise SystemExit(f"unsupported trainable {t!r}")


def resolve_stage(s, i):
    opt = dict(s.get("optimizer") or {})
    name = opt.get("name", "adam")
    opt = {"name": name, "lr": float(opt.get("lr", 1e-2 if name == "sgd" else 1e-3)),
           "weight_decay": float(opt.get("weight_decay", 0)),
           "momentum": float(opt.get("momentum", 0.9 if name == "sgd" else 0.0)),
           "nesterov": bool(opt.get("nesterov", False)), "betas": pair(opt.get("betas"), (0.9, 0.999)),
           "eps": float(opt.get("eps", 1e-8)), "alpha": float(opt.get("alpha", 0.99))}
    sch = dict(s.get("schedule") or {})
    sch = {"name": sch.get("name", "constant"), "warmup_steps": int(sch.get("warmup_steps", 0)),
           "step_epochs": int(sch.get("step_epochs", 10)), "gamma": float(sch.get("gamma", 0.1)),
           "decay_steps": int(sch.get("decay_steps", 1000)), "decay_rate": float(sch.get("decay_rate", 0.9)),
           "staircase": bool(sch.get("staircase", False)), "min_lr": float(sch.get("min_lr", 0.0))}
    trainable = resolve_trainable(s.get("trainable", "head"))
    es = s.get("early_stopping")
    eso = es if isinstance(es, dict) else {}
    es_on = eso.get("enabled", isinstance(es, dict) or es is True)
    early = {"enabled": bool(es_on), "monitor": eso.get("monitor", "val_loss"), "patience": int(eso.get("patience", 3)),
             "min_delta": float(eso.get("min_delta", 0.0)), "restore_best": bool(eso.get("restore_best", True))}
    fc = s.get("feature_cache")
    fco = fc if isinstance(fc, dict) else {}
    cache_on = fco.get("enabled", fc if isinstance(fc, bool) else trainable[0] == "head")
    cw = s.get("class_weights")
    return {"name": s.get("name", f"stage{i + 1}"), "epochs": int(s.get("epochs", 1)), "trainable": trainable,
            "batch_norm": s.get("batch_norm", "frozen"), "optimizer": opt, "schedule": sch,
            "backbone_lr_mult": float(s.get("backbone_lr_mult", 1.0)),
            "label_smoothing": float(s.get("label_smoothing", 0.0)), "class_weights": cw, "early_stopping": early,
            "feature_cache": bool(cache_on), "cache_views": int(fco.get("views", 0))}


def resolve_config(j):
    d = j.get("data") or {}
    m = j.get("model") or {}
    h = m.get("head") or {}
    th = j.get("threads") or {}
    return {
        "seed": int(j.get("seed", 42)), "monitor": j.get("monitor", "val_accuracy"),
        "micro_batch": int(j.get("micro_batch", 0)),
        "intra_op": int(th.get("intra_op", 0)), "loader": int(th.get("loader", 0)),
        "data": {"train": absolute(d.get("train", "")), "val": absolute(d.get("val") or ""),
                 "validation_split": float(d.get("validation_split", 0.0)),
                 "image_size": d.get("image_size"), "resize": int(d.get("resize", 0)),
                 "normalization": d.get("normalization", "backbone"), "batch_size": int(d.get("batch_size", 32)),
                 "augment": resolve_augment(d.get("augment"))},
        "model": {"backbone": absolute(m.get("backbone", "")), "pooling": h.get("pooling", "avg"),
                  "hidden": [int(x) for x in h.get("hidden", [])], "activation": h.get("activation", "relu"),
                  "dropout": float(h.get("dropout", 0.0))},
        "stages": [resolve_stage(s, i) for i, s in enumerate(j.get("stages") or [])],
    }


def backbone_meta(path):
    """The tltrain_meta.json inside an exported backbone (a TorchScript zip), or None."""
    try:
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                if n.endswith("extra/tltrain_meta.json"):
                    return json.loads(z.read(n))
    except (OSError, zipfile.BadZipFile):
        pass
    return None


# ----------------------------------------------------------------------------------------------
# Data


def scan_folder(root):
    """tltrain's scan: sorted class subfolders, files found recursively, sorted by path."""
    classes = sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)) and not e.startswith("."))
    samples = []
    for label, c in enumerate(classes):
        files = []
        for dp, _, fns in os.walk(os.path.join(root, c), followlinks=True):
            files += [os.path.join(dp, f) for f in fns if os.path.splitext(f)[1].lower() in IMAGE_EXTS]
        samples += [(f, label) for f in sorted(files)]
    return classes, samples


def stratified_split(samples, num_classes, fraction, seed):
    """Same rule as tltrain (rounded share per class, at least 1 held, at least 1 kept); the
    shuffle is numpy's, not std::mt19937_64's, so the chosen files differ."""
    keep, held = [], []
    for c in range(num_classes):
        v = sorted(s for s in samples if s[1] == c)
        rng = np.random.default_rng(seed * 1000003 + c)
        v = [v[i] for i in rng.permutation(len(v))]
        n_held = int(round(len(v) * fraction))
        if n_held == 0 and len(v) >= 2 and fraction > 0:
            n_held = 1
        if n_held >= len(v) >= 1:
            n_held = len(v) - 1
        held += v[:n_held]
        keep += v[n_held:]
    key = lambda s: (s[1], s[0])  # noqa: E731
    return sorted(keep, key=key), sorted(held, key=key)


def limit_samples(samples, n, seed=0):
    if not n or n >= len(samples):
        return samples
    idx = sorted(random.Random(seed).sample(range(len(samples)), n))
    return [samples[i] for i in idx]


class KerasAffine:
    """tltrain's affine step (Keras ImageDataGenerator.random_transform): the same parameter
    draws, the same output->input matrix about the pixel centre, bilinear sampling, border modes
    nearest (replicate) / reflect / wrap / constant(fill_value), result rounded to 8 bits."""

    def __init__(self, a):
        self.a = a

    def __call__(self, img):
        a = self.a
        w, h = img.size
        u = random.uniform
        theta = u(-a["rotation_range"], a["rotation_range"])
        sy = u(-a["height_shift_range"], a["height_shift_range"]) * h
        sx = u(-a["width_shift_range"], a["width_shift_range"]) * w
        shear = u(-a["shear_range"], a["shear_range"])
        zlo, zhi = a["zoom_range"]
        zy, zx = u(zlo, zhi), u(zlo, zhi)
        if zlo == zhi:
            zx = zy = zlo
        if theta == 0 and sx == 0 and sy == 0 and shear == 0 and zx == 1 and zy == 1:
            return img
        th, sh = math.radians(theta), math.radians(shear)
        R = np.array([[math.cos(th), math.sin(th), 0], [-math.sin(th), math.cos(th), 0], [0, 0, 1]])
        Tm = np.array([[1, 0, sx], [0, 1, sy], [0, 0, 1]])
        S = np.array([[math.cos(sh), 0, 0], [-math.sin(sh), 1, 0], [0, 0, 1]])
        Z = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
        cx, cy = (w - 1) / 2, (h - 1) / 2
        to_c = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
        from_c = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
        M = torch.tensor((to_c @ R @ Tm @ S @ Z @ from_c)[:2], dtype=torch.float32)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        src_x = M[0, 0] * xs + M[0, 1] * ys + M[0, 2]
        src_y = M[1, 0] * xs + M[1, 1] * ys + M[1, 2]
        mode = a["fill_mode"]
        if mode == "wrap":
            src_x, src_y = torch.remainder(src_x + 0.5, w) - 0.5, torch.remainder(src_y + 0.5, h) - 0.5
        grid = torch.stack([(2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1], -1).unsqueeze(0)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1).unsqueeze(0)
        pad = {"nearest": "border", "wrap": "border", "reflect": "reflection", "constant": "zeros"}[mode]
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=False)
        if mode == "constant" and a["fill_value"] != 0:
            ones = torch.ones_like(x[:, :1])
            cover = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out = out + a["fill_value"] * (1 - cover)
        out = out.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
        return Image.fromarray(out)


class Flip:
    def __init__(self, h, v):
        self.h, self.v = h, v

    def __call__(self, img):
        h = self.h and random.random() < 0.5
        v = self.v and random.random() < 0.5
        if h:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if v:
            img = img.transpose(Image.FLIP_TOP_BOTTOM)
        return img


class ToInput:
    """8-bit RGB -> normalized CHW floats, as tltrain's normalize_into (pixel scale, mean/std, channel order)."""

    def __init__(self, pre):
        self.mean = torch.tensor(pre["mean"]).view(3, 1, 1)
        self.std = torch.tensor(pre["std"]).view(3, 1, 1)
        self.bgr, self.scale = pre["bgr"], pre["pixel_scale"]

    def __call__(self, img):
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() * self.scale
        if self.bgr:
            x = x.flip(0)
        return (x - self.mean) / self.std


def eval_transform(pre):
    return T.Compose([T.Resize(pre["resize"]), T.CenterCrop((pre["height"], pre["width"])), ToInput(pre)])


def train_transform(pre, a):
    steps = []
    size = (pre["height"], pre["width"])
    for step in a["order"]:
        if step == "crop":
            if a["crop"]["enabled"]:
                steps.append(T.RandomResizedCrop(size, scale=tuple(a["crop"]["scale"]), ratio=tuple(a["crop"]["ratio"])))
            else:
                steps += [T.Resize(pre["resize"]), T.CenterCrop(size)]
        elif step == "affine":
            steps.append(KerasAffine(a))
        elif step == "flip":
            steps.append(Flip(a["horizontal_flip"], a["vertical_flip"]))
        elif step == "color" and (a["brightness"] or a["contrast"] or a["saturation"] or a["hue"]):
            steps.append(T.ColorJitter(a["brightness"], a["contrast"], a["saturation"], a["hue"]))
    if "crop" not in a["order"]:
        steps += [T.Resize(pre["resize"]), T.CenterCrop(size)]
    return T.Compose(steps + [ToInput(pre)])


class ImageList(torch.utils.data.Dataset):
    def __init__(self, samples, transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        with open(path, "rb") as f:
            img = Image.open(io.BytesIO(f.read())).convert("RGB")
        return self.transform(img), label, i


def make_loader(samples, transform, batch_size, workers, shuffle):
    return torch.utils.data.DataLoader(ImageList(samples, transform), batch_size=batch_size, shuffle=shuffle,
                                       num_workers=workers, persistent_workers=False)


def resolve_preprocess(cfg, arch):
    meta = backbone_meta(cfg["model"]["backbone"]) or {}
    in_size = meta.get("input_size", [224, 224])
    d = cfg["data"]
    size = d["image_size"] if isinstance(d["image_size"], list) else in_size
    if isinstance(size, int) or len(size) == 1:
        size = [size if isinstance(size, int) else size[0]] * 2
    h, w = int(size[0]), int(size[1])
    if d["resize"] > 0:
        resize = d["resize"]
    else:
        resize = int(round(meta.get("resize", 256) * min(h, w) / min(in_size)))
    if d["normalization"] == "backbone":
        mean, std = meta.get("mean", PRESETS["imagenet"][0]), meta.get("std", PRESETS["imagenet"][1])
        bgr = meta.get("color_order", "RGB") == "BGR"
        scale = meta.get("pixel_range", 1.0) / 255.0
    else:
        mean, std, bgr, scale = PRESETS[d["normalization"]]
    if meta.get("arch") and meta["arch"] != arch:
        print(f"recipe: warning: the config's backbone is {meta['arch']}, --arch is {arch}", file=sys.stderr)
    return {"height": h, "width": w, "resize": resize, "mean": mean, "std": std, "bgr": bgr, "pixel_scale": scale}


# ----------------------------------------------------------------------------------------------
# Model


class Head(nn.Module):
    """pooling -> [dropout -> Linear -> act]* -> dropout -> Linear (src/model/classifier.cpp)."""

    def __init__(self, c, feature_channels, num_classes):
        super().__init__()
        self.pooling, self.act, self.p = c["pooling"], c["activation"], c["dropout"]
        n_in = 2 * feature_channels if self.pooling == "avgmax" else feature_channels
        layers = []
        for width in c["hidden"]:
            layers.append(nn.Linear(n_in, width))
            n_in = width
        layers.append(nn.Linear(n_in, num_classes))
        self.dense = nn.ModuleList(layers)

    def pool(self, f):
        if self.pooling == "avg":
            return f.mean((2, 3))
        if self.pooling == "max":
            return f.amax((2, 3))
        return torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)

    def forward(self, x):
        for i, layer in enumerate(self.dense):
            if self.p > 0:
                x = F.dropout(x, self.p, self.training)
            x = layer(x)
            if i + 1 < len(self.dense):
                x = {"relu": torch.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}[self.act](x)
        return x


class Classifier(nn.Module):
    def __init__(self, arch, weights, head_cfg, num_classes, seed):
        super().__init__()
        # As scripts/export_backbone.py builds and cuts it, so the blocks are the exported file's.
        spec = eb.ARCHS[arch]
        size = spec.input_size
        model = getattr(torchvision.models, arch)(weights=None, **spec.family.build(size))
        state = eb.read_state_dict(weights, arch, "pass a torchvision state dict")
        eb.load_into(model, spec.family.adapt_state(state, model, size), weights, arch)
        model.eval()
        self.backbone, self.block_names = spec.family.wrap(model)
        with torch.no_grad():
            channels = self.backbone.eval()(torch.zeros(1, 3, 64, 64)).shape[1]
        torch.manual_seed(seed)  # tltrain seeds just before building the head
        self.head = Head(head_cfg, channels, num_classes)
        self.cut = len(self.block_names)

    def block_of(self, name):
        for i, b in enumerate(self.block_names):
            if name.startswith(b + "."):
                return i
        return -1

    def features(self, x):
        return self.backbone(x)

    def forward(self, x):
        return self.head(self.head.pool(self.backbone(x)))

    def set_trainable(self, cut):
        self.cut = cut
        for n, p in self.backbone.named_parameters():
            b = self.block_of(n)
            p.requires_grad_(b >= 0 and b >= cut)
        for p in self.head.parameters():
            p.requires_grad_(True)

    def set_training(self, training, bn_policy):
        """Frozen blocks run as at inference; with "frozen", every backbone BN too."""
        self.train(training)
        if not training:
            return
        for n, m in self.backbone.named_modules():
            if not n:
                continue
            b = self.block_of(n + ".")
            if b >= 0 and b < self.cut:
                m.eval()
            if bn_policy == "frozen" and isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    def backbone_trainable_params(self):
        return [p for p in self.backbone.parameters() if p.requires_grad]


def resolve_cut(names, trainable):
    kind, v = trainable
    n = len(names)
    if kind == "head":
        return n
    if kind == "all":
        return 0
    if kind == "fraction":
        k = math.ceil(v * n - 1e-9)
        return n - min(n, max(k, 1))
    if kind == "blocks":
        return n - int(v)
    if v not in names:
        raise SystemExit(f"no block named {v!r}; blocks: {names}")
    return names.index(v)


def in_chunks(x, micro, fn):
    if micro <= 0 or micro >= x.shape[0]:
        return fn(x)
    return torch.cat([fn(x[i:i + micro]) for i in range(0, x.shape[0], micro)])


# ----------------------------------------------------------------------------------------------
# Training


def lr_factor(s, base_lr, step, steps_per_epoch, total_steps):
    """src/train/schedule.cpp, per optimizer step."""
    name = s["name"]
    if name == "constant":
        f = 1.0
    elif name == "step":
        f = s["gamma"] ** ((step // steps_per_epoch) // s["step_epochs"])
    elif name == "exponential":
        e = (step // s["decay_steps"]) if s["staircase"] else step / s["decay_steps"]
        f = s["decay_rate"] ** e
    elif name == "cosine":
        if base_lr <= 0:
            f = 1.0
        else:
            prog = min(step, total_steps) / total_steps
            f = (s["min_lr"] + (base_lr - s["min_lr"]) * (1 + math.cos(math.pi * prog)) / 2) / base_lr
    else:
        raise SystemExit(f"unknown schedule {name}")
    if step < s["warmup_steps"]:
        f *= (step + 1) / s["warmup_steps"]
    return f


def make_optimizer(o, groups):
    pg = [{"params": p, "lr": lr} for p, lr in groups]
    if o["name"] == "sgd":
        return torch.optim.SGD(pg, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"], weight_decay=o["weight_decay"])
    if o["name"] == "adam":
        return torch.optim.Adam(pg, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])
    if o["name"] == "adamw":
        return torch.optim.AdamW(pg, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])
    return torch.optim.RMSprop(pg, lr=o["lr"], alpha=o["alpha"], eps=o["eps"], weight_decay=o["weight_decay"],
                               momentum=o["momentum"])


def loss_sum(logits, y, class_w, smoothing):
    """Per-sample class-weighted, label-smoothed CE summed, and the summed weights (trainer.cpp)."""
    logp = torch.log_softmax(logits, 1)
    nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1)
    w_y = class_w.index_select(0, y) if class_w is not None else torch.ones_like(nll)
    per = (1 - smoothing) * w_y * nll
    if smoothing > 0:
        allp = -(logp * class_w.unsqueeze(0)).sum(1) if class_w is not None else -logp.sum(1)
        per = per + smoothing * allp / logits.shape[1]
    return per.sum(), w_y.sum()


def gradient_step(forward, x, y, opt, class_w, smoothing, micro):
    opt.zero_grad()
    n = x.shape[0]
    if micro <= 0 or micro > n:
        micro = n
    total_w = class_w.index_select(0, y).sum() if class_w is not None else torch.tensor(float(n))
    st = [0.0, 0.0, 0, 0]
    for s in range(0, n, micro):
        xb, yb = x[s:s + micro], y[s:s + micro]
        logits = forward(xb)
        ls, ws = loss_sum(logits, yb, class_w, smoothing)
        (ls / total_w).backward()
        st[0] += ls.item()
        st[1] += ws.item()
        st[2] += int((logits.argmax(1) == yb).sum())
        st[3] += len(yb)
    opt.step()
    return st


def mix_seed(a, b, c=0):
    """data::mix_seed (src/data/preprocess.cpp), for the per-epoch dropout seed."""
    m = (1 << 64) - 1

    def splitmix(s):
        s = (s + 0x9E3779B97F4A7C15) & m
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    h = splitmix(a)
    h = splitmix(h ^ ((b * 0xD6E8FEB86659FD93) & m))
    return splitmix(h ^ ((c * 0xA0761D6478BD642F) & m))


def improved(metric, value, best, min_delta, have_best):
    if not have_best:
        return True
    return value < best - min_delta if "loss" in metric else value > best + min_delta


@torch.no_grad()
def build_cache(m, samples, pre, aug, views, bs, workers, micro):
    m.set_training(False, "frozen")
    out = []
    tf = eval_transform(pre) if views == 0 else train_transform(pre, aug)
    for _ in range(max(views, 1)):
        feats = None
        for x, _, idx in make_loader(samples, tf, bs, workers, shuffle=False):
            f = in_chunks(x, micro, lambda t: m.head.pool(m.features(t)))
            if feats is None:
                feats = torch.zeros(len(samples), f.shape[1])
            feats[idx] = f
        out.append(feats)
    return out, torch.tensor([s[1] for s in samples])


@torch.no_grad()
def evaluate(m, loader, micro):
    m.set_training(False, "frozen")
    logits, labels = [], []
    for x, y, _ in loader:
        logits.append(in_chunks(x, micro, m))
        labels.append(y)
    return val_metrics(torch.cat(logits), torch.cat(labels))


def val_metrics(logits, labels):
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).double().mean().item()


def fit(cfg, args):
    t_start = time.time()
    seed = cfg["seed"]
    d = cfg["data"]
    classes, train = scan_folder(d["train"])
    if d["val"]:
        _, val = scan_folder(d["val"])
    elif d["validation_split"] > 0:
        train, val = stratified_split(train, len(classes), d["validation_split"], seed)
    else:
        val = []
    train, val = limit_samples(train, args.limit), limit_samples(val, args.limit)
    C = len(classes)
    pre = resolve_preprocess(cfg, args.arch)
    m = Classifier(args.arch, args.weights, cfg["model"], C, seed)
    bs = d["batch_size"]
    val_loader = make_loader(val, eval_transform(pre), bs, args.workers, False) if val else None
    print(f"recipe: {len(classes)} classes {classes}, {len(train)} train / {len(val)} val images, "
          f"{len(m.block_names)} blocks, {pre['height']}x{pre['width']} resize {pre['resize']}", file=sys.stderr)
    history = []
    epoch_base = 0
    best_monitor, have_best = 0.0, False
    for si, st in enumerate(cfg["stages"]):
        cut = resolve_cut(m.block_names, st["trainable"])
        m.set_trainable(cut)
        bn_train = st["batch_norm"] == "train" and cut < len(m.block_names)
        micro = args.micro if args.micro is not None else (cfg["micro_batch"] or (0 if bn_train else 8))
        o = st["optimizer"]
        bb = m.backbone_trainable_params()
        groups, base_lrs = [], []
        if bb:
            groups.append((bb, o["lr"] * st["backbone_lr_mult"]))
            base_lrs.append(o["lr"] * st["backbone_lr_mult"])
        groups.append((list(m.head.parameters()), o["lr"]))
        base_lrs.append(o["lr"])
        opt = make_optimizer(o, groups)
        class_w = None
        if st["class_weights"] == "auto":
            counts = [sum(1 for s in train if s[1] == c) for c in range(C)]
            class_w = torch.tensor([len(train) / (C * n) if n else 0.0 for n in counts])
        elif isinstance(st["class_weights"], list):
            class_w = torch.tensor([float(w) for w in st["class_weights"]])
        cache = val_cache = None
        if st["feature_cache"]:
            t0 = time.time()
            cache = build_cache(m, train, pre, d["augment"], st["cache_views"], bs, args.workers, micro)
            if val:
                val_cache = build_cache(m, val, pre, d["augment"], 0, bs, args.workers, micro)
            print(f"recipe: feature cache {len(train)} images x {max(st['cache_views'], 1)} view(s) "
                  f"in {time.time() - t0:.1f} s", file=sys.stderr)
            steps_per_epoch = (len(train) + bs - 1) // bs
        else:
            train_loader = make_loader(train, train_transform(pre, d["augment"]), bs, args.workers, True)
            steps_per_epoch = len(train_loader)
        total_steps = steps_per_epoch * st["epochs"]
        stage_step = 0
        es = st["early_stopping"]
        es_best, es_have, es_wait, stage_best = 0.0, False, 0, None
        for epoch in range(st["epochs"]):
            epoch_id = epoch_base + epoch
            torch.manual_seed(mix_seed(seed, si + 1, epoch))
            m.set_training(True, st["batch_norm"])
            t0 = time.time()
            tot = [0.0, 0.0, 0, 0]
            lr_now = 0.0

            def step(forward, x, y):
                nonlocal stage_step, lr_now
                f = lr_factor(st["schedule"], o["lr"], stage_step, steps_per_epoch, total_steps)
                for g, base in zip(opt.param_groups, base_lrs):
                    g["lr"] = base * f
                lr_now = o["lr"] * f
                s = gradient_step(forward, x, y, opt, class_w, st["label_smoothing"], micro)
                if not math.isfinite(s[0]):
                    raise SystemExit(f"loss became {s[0]} in stage {st['name']} epoch {epoch + 1}")
                for k in range(4):
                    tot[k] += s[k]
                stage_step += 1

            if cache is not None:
                feats_views, labels = cache
                feats = feats_views[epoch_id % len(feats_views)]
                order = torch.randperm(len(labels))
                for s0 in range(0, len(labels), bs):
                    idx = order[s0:s0 + bs]
                    step(m.head, feats[idx], labels[idx])
            else:
                for x, y, _ in train_loader:
                    step(m, x, y)
            train_secs = time.time() - t0
            e = {"stage": si + 1, "stage_name": st["name"], "epoch": epoch + 1, "global_epoch": epoch_id + 1,
                 "loss": tot[0] / tot[1] if tot[1] else 0.0, "accuracy": tot[2] / tot[3] if tot[3] else 0.0}
            if val:
                if val_cache is not None:
                    with torch.no_grad():
                        m.set_training(False, st["batch_norm"])
                        e["val_loss"], e["val_accuracy"] = val_metrics(m.head(val_cache[0][0]), val_cache[1])
                else:
                    e["val_loss"], e["val_accuracy"] = evaluate(m, val_loader, micro)
            e["lr"] = lr_now
            e["images_per_s"] = tot[3] / train_secs if train_secs > 0 else 0.0
            e["seconds"] = time.time() - t0
            history.append(e)
            line = (f"stage {si + 1} ({st['name']}) epoch {epoch + 1}/{st['epochs']}: loss {e['loss']:.4f} "
                    f"acc {e['accuracy']:.4f}")
            if val:
                line += f"  val_loss {e['val_loss']:.4f} val_acc {e['val_accuracy']:.4f}"
            line += f"  lr {lr_now:.6f}  {e['images_per_s']:.1f} img/s  {e['seconds']:.1f} s"
            mon = e.get(cfg["monitor"], 0.0)
            if improved(cfg["monitor"], mon, best_monitor, 0.0, have_best):
                best_monitor, have_best = mon, True
                line += "  *best*"
            stopped = False
            if es["enabled"]:
                v = e.get(es["monitor"], 0.0)
                if improved(es["monitor"], v, es_best, es["min_delta"], es_have):
                    es_best, es_have, es_wait = v, True, 0
                    if es["restore_best"]:
                        stage_best = {k: t.detach().clone() for k, t in m.state_dict().items()}
                else:
                    es_wait += 1
                    if es_wait >= max(es["patience"], 1):
                        stopped = True
                        line += f"  (early stop: {es['monitor']} did not improve for {es_wait} epochs)"
            print(line, flush=True)
            if (stopped or epoch + 1 == st["epochs"]) and es["enabled"] and es["restore_best"] and stage_best:
                m.load_state_dict(stage_best)
                print(f"stage '{st['name']}': restored the weights of its best epoch ({es['monitor']} {es_best:.4f})",
                      flush=True)
            if stopped:
                break
        epoch_base += st["epochs"]
    vals = [h["val_accuracy"] for h in history if "val_accuracy" in h]
    return {"best_val_accuracy": max(vals) if vals else None, "final_val_accuracy": vals[-1] if vals else None,
            "monitor": cfg["monitor"], "best_monitored": best_monitor, "wall_seconds": time.time() - t_start,
            "seed": seed, "threads": torch.get_num_threads(), "workers": args.workers,
            "torch": torch.__version__, "torchvision": torchvision.__version__, "history": history}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True, help="torchvision state dict (.pth) of the arch")
    p.add_argument("--arch", default="mobilenet_v2", choices=eb.ARCHS)
    p.add_argument("--seed", type=int, default=None, help="default: the config's seed")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: config threads.intra_op or cores)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: config threads.loader or cores)")
    p.add_argument("--micro", type=int, default=None,
                   help="images per forward chunk, gradients accumulated (0: whole batch; default: tltrain's rule, "
                        "config micro_batch or 8 on CPU, whole batch when BN trains)")
    p.add_argument("--limit", type=int, default=0, help="smoke tests: use only N train and N val images")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, as tltrain's --set")
    p.add_argument("--json-out")
    args = p.parse_args()
    cfg = resolve_config(load_config(args.config, args.set))
    if args.seed is not None:
        cfg["seed"] = args.seed
    cores = os.cpu_count() or 1
    args.threads = args.threads or cfg["intra_op"] or cores
    args.workers = args.workers if args.workers is not None else (cfg["loader"] or cores)
    torch.set_num_threads(args.threads)
    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"] % (1 << 32))
    torch.manual_seed(cfg["seed"])
    summary = fit(cfg, args)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
