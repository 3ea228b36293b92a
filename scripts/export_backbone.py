#!/usr/bin/python3
"""Export a torchvision feature extractor as a tltrain backbone (see docs/backbone-format.md).

The output is a TorchScript module whose forward maps a normalized N x 3 x H x W batch to the
last feature map N x C x h x w (no pooling, no classifier), with the metadata that tltrain needs
(preprocessing, freezable blocks, weight provenance) stored inside the file as the extra file
`tltrain_meta.json`.

Usage:
  /usr/bin/python3 scripts/export_backbone.py --arch ARCH --weights SOURCE --out FILE.pt [--input-size N]

  --arch        mobilenet_v2 | efficientnet_b0 | resnet18 | resnet50 | vgg16
  --weights     imagenet   torchvision's ImageNet weights (taken from torch hub's cache when present,
                           downloaded otherwise)
                none       random initialisation (no transfer learning; for tests only)
                PATH.pth   a state dict of the same torchvision architecture (plain, or wrapped
                           as {'state_dict': ...} or {'model': ...})
  --out         where to write the backbone (written atomically)
  --input-size  default square input size recorded in the metadata (default 224)

Examples:
  scripts/export_backbone.py --arch mobilenet_v2 --weights imagenet --out models/mobilenet_v2.pt
  scripts/export_backbone.py --arch resnet18 --weights ~/resnet18-f37072fd.pth --out resnet18.pt

Exit codes: 0 ok, 2 usage (bad arguments, weights that do not fit --arch), 3 unreadable or
malformed input file, 4 runtime/network failure.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import socket
import sys
import tempfile
import urllib.error
from collections.abc import Mapping

EXIT_USAGE, EXIT_BAD_FILE, EXIT_RUNTIME = 2, 3, 4

try:
    import torch
    import torchvision
    from torch import nn
except ImportError as e:  # the `python3` on PATH may be an interpreter without torch
    print(f"export_backbone: error: cannot import torch/torchvision in {sys.executable} ({e}); "
          "run the script with /usr/bin/python3 or install python3-torch python3-torchvision.", file=sys.stderr)
    sys.exit(4)

ARCHS = ("mobilenet_v2", "efficientnet_b0", "resnet18", "resnet50", "vgg16")
DEFAULT_INPUT_SIZE = 224
# Output channels of the last feature map, used to check the exported forward.
FEATURE_CHANNELS = {"mobilenet_v2": 1280, "efficientnet_b0": 1280, "resnet18": 512,
                    "resnet50": 2048, "vgg16": 512}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class ExportError(Exception):
    """A user-facing failure: one sentence for stderr plus the exit code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------------
# Wrappers. They keep torchvision's module objects (and hence their parameter names) so that
# the block names in the metadata are plain module paths inside the scripted module.


class FeaturesBackbone(nn.Module):
    """mobilenet_v2, efficientnet_b0 and vgg16 already have a `features` Sequential that ends at
    the last feature map (for vgg16 including the final max-pool: 512 x 7 x 7 at 224)."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ResNetBackbone(nn.Module):
    """ResNet minus avgpool/fc. conv1/bn1/relu/maxpool are grouped into `stem` so that the
    stem is one freezable block like the residual blocks."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
        self.layer1 = m.layer1
        self.layer2 = m.layer2
        self.layer3 = m.layer3
        self.layer4 = m.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def build_model(arch):
    """The full torchvision classifier, randomly initialised (weights are loaded separately so
    that every source goes through the same strict, checked loading path)."""
    return getattr(torchvision.models, arch)(weights=None)


def make_backbone(arch, model):
    """Returns (wrapper, block names in forward order)."""
    if arch in ("resnet18", "resnet50"):
        wrapper = ResNetBackbone(model)
        names = ["stem"] + [f"layer{L}.{i}" for L in range(1, 5)
                            for i in range(len(getattr(wrapper, f"layer{L}")))]
    elif arch == "mobilenet_v2":
        wrapper = FeaturesBackbone(model.features)
        names = [f"features.{i}" for i in range(len(wrapper.features))]
    elif arch == "efficientnet_b0":
        # features.0 is the stem conv, features.1..7 are stages of MBConv blocks and features.8
        # the final 1x1 conv; each MBConv is its own block so that unfreezing can be fine grained.
        wrapper = FeaturesBackbone(model.features)
        last = len(wrapper.features) - 1
        names = ["features.0"] + [f"features.{s}.{i}" for s in range(1, last)
                                  for i in range(len(wrapper.features[s]))] + [f"features.{last}"]
    elif arch == "vgg16":
        wrapper = FeaturesBackbone(model.features)
        # ReLU and max-pool layers own no parameters, so only convolutions are blocks.
        names = [f"features.{k}" for k, m in enumerate(wrapper.features) if isinstance(m, nn.Conv2d)]
    else:
        raise AssertionError(arch)
    return wrapper, names


def describe_blocks(wrapper, names, size):
    """Builds the metadata block list and checks the invariants docs/backbone-format.md promises:
    every parameter (and buffer) is owned by exactly one block, and blocks run in list order."""
    blocks = []
    for name in names:
        mod = wrapper.get_submodule(name)
        blocks.append({
            "name": name,
            "params": sum(p.numel() for p in mod.parameters()),
            "batchnorms": sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in mod.modules()),
        })

    # The trailing "." matters: features.1 must not claim features.10's parameters.
    for kind, named in (("parameter", wrapper.named_parameters()), ("buffer", wrapper.named_buffers())):
        for pname, _ in named:
            owners = [n for n in names if pname.startswith(n + ".")]
            assert len(owners) == 1, f"{kind} {pname} is owned by {owners or 'no block'}"
    assert sum(b["params"] for b in blocks) == sum(p.numel() for p in wrapper.parameters())
    assert sum(b["batchnorms"] for b in blocks) == sum(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in wrapper.modules())

    # Forward order, observed rather than assumed: record when each block module is entered.
    order = []
    hooks = [wrapper.get_submodule(n).register_forward_pre_hook(
        lambda _m, _in, n=n: order.append(n)) for n in names]
    try:
        with torch.no_grad():
            wrapper(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    assert order == names, f"blocks do not run in the listed order: {order}"
    return blocks


# --------------------------------------------------------------------------------------------
# Weights


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def guess_arch(keys):
    """(architecture, a key that gives it away) for the torchvision model a state dict's keys
    look like, or (None, None)."""
    def has(k):
        return k in keys
    if has("layer1.0.conv3.weight"):  # bottleneck blocks
        return ("resnet50" if not has("layer3.6.conv1.weight") else "resnet101/152"), "layer1.0.conv3.weight"
    if has("layer1.0.conv1.weight"):  # basic blocks
        return ("resnet18" if not has("layer3.2.conv1.weight") else "resnet34"), "layer1.0.conv1.weight"
    if has("features.1.0.block.0.0.weight"):
        b0 = has("features.6.3.block.0.0.weight") and not has("features.6.4.block.0.0.weight")
        return ("efficientnet_b0" if b0 else "efficientnet (not b0)"), "features.1.0.block.0.0.weight"
    if has("features.18.0.weight"):
        return "mobilenet_v2", "features.18.0.weight"
    if has("features.28.weight") and has("classifier.6.weight"):
        return ("vgg16" if not has("features.30.weight") else "vgg (not vgg16)"), "features.28.weight"
    return None, None


def a_(word):
    """'a resnet50', 'an efficientnet_b0'."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def short_list(items, n=3):
    items = list(items)
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def read_state_dict(path, arch, fix):
    """torch.load + unwrapping + validation; `fix` is the advice given for an unreadable file."""
    if not os.path.exists(path):
        raise ExportError(EXIT_USAGE, f"weights file '{path}' does not exist; check the path, or pass "
                                      "--weights imagenet (or none for a random, untrained backbone).")
    if os.path.isdir(path):
        raise ExportError(EXIT_USAGE, f"weights path '{path}' is a directory; pass the .pth file itself.")
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # pickle, zip and EOF errors all mean "not a torch.save file"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise ExportError(EXIT_BAD_FILE, f"cannot read weights file '{path}' as a PyTorch checkpoint "
                                         f"({type(e).__name__}: {reason}); {fix}")

    # Training scripts often wrap the state dict together with optimizer state etc.
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if isinstance(obj, nn.Module):
        raise ExportError(EXIT_BAD_FILE, f"weights file '{path}' holds a whole pickled {type(obj).__name__}, "
                                         "not a state dict; re-save it with torch.save(model.state_dict(), PATH).")
    if not (isinstance(obj, Mapping) and obj and all(isinstance(k, str) and torch.is_tensor(v)
                                                      for k, v in obj.items())):
        what = f"a {type(obj).__name__}" + (f" with keys {short_list(map(str, obj))}" if isinstance(obj, Mapping) else "")
        raise ExportError(EXIT_BAD_FILE, f"weights file '{path}' is not a state dict (it holds {what}); "
                                         f"save the {arch} weights with torch.save(model.state_dict(), PATH).")
    # nn.DataParallel / DistributedDataParallel checkpoints prefix every key with "module.".
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_into(model, state, path, arch):
    """Strict load, but with our own one-sentence diagnosis instead of PyTorch's long error."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} is {list(state[k].shape)} not {list(v.shape)}"
                   for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        guess, evidence = guess_arch(state.keys())
        if guess and guess != arch:  # the common mistake: right file, wrong --arch (or vice versa)
            raise ExportError(EXIT_USAGE, f"weights file '{path}' does not fit torchvision's {arch}: "
                                          f"is this {a_(guess)} checkpoint? it has {guess} keys such as "
                                          f"{evidence}" + (f" and lacks {arch}'s {missing[0]}" if missing else "")
                                          + f"; pass the matching --arch, or {a_(arch)} state dict.")
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys ({short_list(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys ({short_list(unexpected)})")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} shape mismatches ({short_list(wrong_shape, 2)})")
        raise ExportError(EXIT_USAGE, f"weights file '{path}' does not fit torchvision's {arch}: "
                                      + ", ".join(problems) + f"; pass a state dict of the unmodified "
                                      f"torchvision {arch} (e.g. saved from torchvision.models.{arch}()).")
    model.load_state_dict(state, strict=True)


def imagenet_weights_file(arch):
    """Path of torchvision's ImageNet checkpoint in torch hub's cache, downloading it if needed."""
    enum_name = {"mobilenet_v2": "MobileNet_V2_Weights", "efficientnet_b0": "EfficientNet_B0_Weights",
                 "resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights", "vgg16": "VGG16_Weights"}[arch]
    # IMAGENET1K_V1 everywhere: its evaluation transform is resize 256 / crop 224, which is what
    # the metadata records (resnet50's V2 weights, for example, expect resize 232).
    url = getattr(torchvision.models, enum_name).IMAGENET1K_V1.url
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if os.path.isfile(cached):  # no network needed
        return cached, url
    print(f"export_backbone: downloading {url} to {cached}", file=sys.stderr)
    # Without a timeout an offline machine with a black-holed route hangs for minutes.
    socket.setdefaulttimeout(15)
    hash_match = torch.hub.HASH_REGEX.search(os.path.basename(url))
    try:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        torch.hub.download_url_to_file(url, cached, hash_prefix=hash_match.group(1) if hash_match else None,
                                       progress=False)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        reason = getattr(e, "reason", None) or e
        raise ExportError(EXIT_RUNTIME, f"could not download the ImageNet weights for {arch} from {url} "
                                        f"({reason}); download that file on a machine with internet access "
                                        f"and pass --weights PATH.pth (or copy it to {cached}).")
    return cached, url


# --------------------------------------------------------------------------------------------


def to_torchscript(wrapper, size):
    """Scripting keeps control flow and works for every supported arch; tracing is only a
    fallback, announced loudly because a traced module silently freezes data-dependent paths."""
    try:
        return torch.jit.script(wrapper), "scripted"
    except Exception as e:
        print(f"export_backbone: note: torch.jit.script failed ({type(e).__name__}: "
              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); falling back to torch.jit.trace",
              file=sys.stderr)
        with torch.no_grad():
            return torch.jit.trace(wrapper, torch.zeros(1, 3, size, size)), "traced"


def count_script_batchnorms(module):
    """How the C++ side counts them: TorchScript type names containing 'BatchNorm'."""
    return sum("BatchNorm" in m._c._type().qualified_name() for m in module.modules())


def save_atomically(module, out, meta):
    """Save to a temporary file next to `out` and rename it into place, so that a crash or a
    full disk never leaves a truncated backbone that a trainer might pick up."""
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix="." + os.path.basename(out) + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.jit.save(module, tmp, _extra_files={"tltrain_meta.json": json.dumps(meta)})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Export a torchvision feature extractor as a tltrain backbone (docs/backbone-format.md).")
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--weights", required=True, metavar="imagenet|none|PATH.pth",
                   help="torchvision ImageNet weights, random init, or a state dict file")
    p.add_argument("--out", required=True, metavar="FILE.pt")
    p.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, metavar="N",
                   help=f"default square input size recorded in the metadata (default {DEFAULT_INPUT_SIZE})")
    p.add_argument("--meta-out", metavar="FILE.json",
                   help="also write the embedded metadata to this file (the tests compare it with what C++ reads)")
    args = p.parse_args(argv)
    if args.input_size < 32:  # five stride-2 stages: smaller inputs leave no feature map
        p.error(f"--input-size must be at least 32 (got {args.input_size})")
    if os.path.isdir(args.out):
        p.error(f"--out '{args.out}' is a directory; give a file name such as {args.arch}.pt")
    return args


def export(args):
    arch, size = args.arch, args.input_size
    # Resolve and read the weights before building the model, so that an offline download or a
    # bad path fails at once instead of after vgg16's slow random initialisation.
    state = None
    if args.weights == "none":
        weights = {"source": "none", "file": None, "sha256": None}
        print("WARNING: ------------------------------------------------------------------\n"
              f"WARNING: --weights none: the {arch} backbone is RANDOMLY INITIALISED.\n"
              "WARNING: There is NO transfer learning with it: nothing was pre-trained, and\n"
              "WARNING: training on top of it starts from scratch. Use it for tests only;\n"
              "WARNING: pass --weights imagenet or --weights PATH.pth for real training.\n"
              "WARNING: ------------------------------------------------------------------",
              file=sys.stderr)
    else:
        if args.weights == "imagenet":
            path, url = imagenet_weights_file(arch)
            source, file_name = "imagenet", os.path.basename(url)
            fix = f"the cached download may be corrupt: delete '{path}' and run again."
        else:
            path = os.path.expanduser(args.weights)
            source, file_name = "file", os.path.basename(path)
            fix = f"pass {a_(arch)} state dict saved with torch.save(model.state_dict(), PATH)."
        state = read_state_dict(path, arch, fix)
        weights = {"source": source, "file": file_name, "sha256": sha256_of(path)}

    torch.manual_seed(0)  # reproducible files for --weights none
    model = build_model(arch)
    if state is not None:
        load_into(model, state, path, arch)

    model.eval()
    wrapper, names = make_backbone(arch, model)
    wrapper.eval()
    blocks = describe_blocks(wrapper, names, size)

    module, how = to_torchscript(wrapper, size)
    module.eval()

    # The exported forward must reproduce the eager one and give the expected feature map.
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = module(x)
        diff = (y - wrapper(x)).abs().max().item()
    side = size // 32 if arch == "vgg16" else math.ceil(size / 32)  # vgg pools floor, strided convs ceil
    expected = (2, FEATURE_CHANNELS[arch], side, side)
    if tuple(y.shape) != expected or diff > 1e-4:
        raise ExportError(EXIT_RUNTIME, f"exported {arch} forward gives shape {list(y.shape)} (expected "
                                        f"{list(expected)}) with max difference {diff:g} to eager PyTorch; "
                                        "this is a bug in the exporter or this torch/torchvision build.")
    script_bn = count_script_batchnorms(module)
    assert script_bn == sum(b["batchnorms"] for b in blocks), (script_bn, blocks)

    meta = {
        "format": "tltrain-backbone",
        "format_version": 1,
        "arch": arch,
        "input_size": [size, size],
        "resize": round(size / 0.875),  # the usual ImageNet ratio: 224 -> 256
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "color_order": "RGB",
        "pixel_range": 1.0,
        "feature_channels": int(y.shape[1]),
        "feature_size": [int(y.shape[2]), int(y.shape[3])],
        "blocks": blocks,
        "weights": weights,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exporter": "scripts/export_backbone.py",
    }
    save_atomically(module, args.out, meta)
    if args.meta_out:
        with open(args.meta_out, "w") as f:
            json.dump(meta, f, indent=2)

    n_params = sum(b["params"] for b in blocks)
    print(f"exported {arch} ({how}) -> {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)\n"
          f"  blocks: {len(blocks)} ({blocks[0]['name']} .. {blocks[-1]['name']}), params: {n_params:,}, "
          f"batchnorms: {script_bn}\n"
          f"  features: {meta['feature_channels']} x {meta['feature_size'][0]} x {meta['feature_size'][1]} "
          f"at input {size} x {size} (resize {meta['resize']})\n"
          f"  weights: {weights['source']}"
          + (f" {weights['file']} sha256 {weights['sha256']}" if weights["file"] else " (random init)"))


def main(argv=None):
    args = parse_args(argv)
    try:
        export(args)
    except ExportError as e:
        print(f"export_backbone: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
