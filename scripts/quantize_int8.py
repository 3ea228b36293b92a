#!/usr/bin/python3
"""Post-training static int8 quantisation of a tltrain model file (TorchScript, from `tltrain export`).

The backbone is rebuilt as torchvision's quantisable twin of its architecture
(torchvision.models.quantization), the trained backbone's tensors are loaded into it by name (every
one must land: the backbone's names are torchvision's, regrouped as scripts/export_backbone.py
does), conv + BatchNorm (+ ReLU) are fused, observers are calibrated on CALIB.npy and the result is
converted to int8 kernels of the chosen backend. The head stays float. The output is one scripted
TorchScript file: quant stub -> int8 backbone -> dequant stub -> the input's head, with the input's
attributes, forward(x) -> float32 logits and predict_proba(x), and tltrain_model.json saying
"precision": "int8" and "quantization": {...}. A program that loads it must set the same quantised
engine first (Python: torch.backends.quantized.engine = backend; C++:
at::globalContext().setQEngine(...)), as "quantization.backend" says.

The trained activations are kept: torchvision's quantisable MobileNetV2 swaps ReLU6 for ReLU, which
changes the network that was trained; here each conv + BN + ReLU6 becomes a fused conv + ReLU whose
int8 output range is capped at [0, 6] (the clamp at the top of the range is ReLU6's), and
calibration clamps at 6 too, so the observers see the trained activations. Before quantising, the
rebuilt float backbone must reproduce the file's backbone (1e-4 relative), fused and clamped too.

CALIB.npy is float32 N x 3 x H x W (npy, C order) of images preprocessed as the model's
"preprocess" says, H x W its input size (float64 or Fortran order are converted). After
converting, the script runs the int8 and the fp32 model on those images and reports their top-1
agreement and max_rel_diff (the largest logit difference over max(1, the largest |fp32 logit|)).
It refuses only non-finite logits or a wrong output shape: how much agreement is enough is the
caller's decision. It also checks that the written file loads and computes the checked logits,
and that an image's logits do not depend on its batch.

Architectures: mobilenet_v2, mobilenet_v3_large/small, resnet18/34/50/101/152, resnext50_32x4d,
resnext101_32x8d/64x4d, wide_resnet50_2/101_2, inception_v3, googlenet, shufflenet_v2_x0_5 ..
x2_0, whole or cut at model.features_from; any other is refused (exit 4).

Usage:
  /usr/bin/python3 scripts/quantize_int8.py --model MODEL.pt --calibration CALIB.npy --out OUT.pt
                                            [--backend auto|fbgemm|onednn|qnnpack] [--source-name NAME]
  --backend  auto (default): fbgemm where this torch has it, else onednn on x86 (qnnpack for
             resnext under torch 1.x, whose onednn grouped int8 convolution fails), qnnpack on ARM
The last stdout line is a JSON summary: {"out", "arch", "backend", "calibration", "bytes",
"fp32_bytes", "top1_agreement", "max_rel_diff"}.
Exit codes: 0 written; 2 bad arguments or input file (the message names it and the fix), or int8
logits that are not finite or of the wrong shape (nothing written); 3 torch, torchvision or numpy
missing; 4 a request refused: an architecture without a quantisable form, or a backend this torch
lacks or cannot run for it; 5 quantisation failed (a bug here, or a defect of this torch's int8
kernels). tltrain export reports 2 as a data error, 3 and 4 as usage errors, 5 as a runtime error.
"""
import argparse
import datetime
import json
import os
import platform
import sys
import warnings
from collections import OrderedDict

from atomic_output import atomic_output

BATCH = 16  # calibration and check batch: the histogram observers' cost grows with it, memory too
BACKENDS = ("auto", "fbgemm", "onednn", "qnnpack")
MODEL_JSON = "tltrain_model.json"


def fail(code, msg):
    print(f"quantize_int8: {msg}", file=sys.stderr)
    sys.exit(code)


def first_line(e):
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


# --------------------------------------------------------------------------------------------
# Architectures: torchvision's quantisable classes, and the regrouping export_backbone.py applied.

# (block, layers, groups, width_per_group), as torchvision.models.resnet builds each.
RESNETS = {
    "resnet18": ("basic", [2, 2, 2, 2], 1, 64), "resnet34": ("basic", [3, 4, 6, 3], 1, 64),
    "resnet50": ("bottleneck", [3, 4, 6, 3], 1, 64), "resnet101": ("bottleneck", [3, 4, 23, 3], 1, 64),
    "resnet152": ("bottleneck", [3, 8, 36, 3], 1, 64),
    "resnext50_32x4d": ("bottleneck", [3, 4, 6, 3], 32, 4), "resnext101_32x8d": ("bottleneck", [3, 4, 23, 3], 32, 8),
    "resnext101_64x4d": ("bottleneck", [3, 4, 23, 3], 64, 4),
    "wide_resnet50_2": ("bottleneck", [3, 4, 6, 3], 1, 128), "wide_resnet101_2": ("bottleneck", [3, 4, 23, 3], 1, 128),
}
SHUFFLENETS = ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0")
QUANTISABLE = (["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"] + list(RESNETS)
               + ["inception_v3", "googlenet"] + list(SHUFFLENETS))
ACTIVATIONS = {  # what "quantization.activations" records per family
    "mobilenet_v2": "relu6 kept: fused conv+bn+relu with the int8 output range capped at [0, 6]",
    "mobilenet_v3": "as trained: relu fused, hardswish and hardsigmoid as int8 ops",
}


def build_quantisable(arch, nn):
    """(torchvision's quantisable float model for ARCH with random weights, its regrouping)."""
    import torchvision.models.quantization as tvq
    from torchvision.models.quantization import mobilenetv2, mobilenetv3, resnet
    from torchvision.models.mobilenetv3 import _mobilenet_v3_conf

    def named(container, *names):
        return nn.Sequential(OrderedDict((n, getattr(container, n)) for n in names))

    # Each mirrors the export_backbone.py wrapper of the same name; the strict load checks them.
    def wrap_features(m):
        return nn.Sequential(OrderedDict(features=m.features))

    def wrap_resnet(m):
        return nn.Sequential(OrderedDict(stem=nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool), layer1=m.layer1,
                                         layer2=m.layer2, layer3=m.layer3, layer4=m.layer4))

    def wrap_inception_v3(m):
        stem = named(m, "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2")
        mixed = [n for n, _ in m.named_children() if n.startswith("Mixed_")]
        return nn.Sequential(OrderedDict([("stem", stem)] + [(n, getattr(m, n)) for n in mixed]))

    def wrap_googlenet(m):
        parts = [("stem", named(m, "conv1", "maxpool1", "conv2", "conv3", "maxpool2"))]
        for n in ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
                  "inception4e", "inception5a", "inception5b"):
            pool = {"inception3b": "maxpool3", "inception4e": "maxpool4"}.get(n)
            parts.append((n, named(m, n, pool) if pool else getattr(m, n)))
        return nn.Sequential(OrderedDict(parts))

    def wrap_shufflenet(m):
        return nn.Sequential(OrderedDict(stem=named(m, "conv1", "maxpool"), stage2=m.stage2, stage3=m.stage3,
                                         stage4=m.stage4, conv5=m.conv5))

    # The classes themselves, not torchvision's builders: those also replace ReLU6 by ReLU.
    if arch == "mobilenet_v2":
        return tvq.QuantizableMobileNetV2(block=mobilenetv2.QuantizableInvertedResidual), wrap_features
    if arch.startswith("mobilenet_v3_"):
        setting, last_channel = _mobilenet_v3_conf(arch)
        return tvq.QuantizableMobileNetV3(setting, last_channel, block=mobilenetv3.QuantizableInvertedResidual), \
            wrap_features
    if arch in RESNETS:
        block, layers, groups, width = RESNETS[arch]
        block = resnet.QuantizableBasicBlock if block == "basic" else resnet.QuantizableBottleneck
        return tvq.QuantizableResNet(block, layers, groups=groups, width_per_group=width), wrap_resnet
    if arch == "inception_v3":
        return tvq.QuantizableInception3(aux_logits=False, init_weights=False), wrap_inception_v3
    if arch == "googlenet":
        return tvq.QuantizableGoogLeNet(aux_logits=False, init_weights=False), wrap_googlenet
    if arch in SHUFFLENETS:  # its builder only swaps ReLU for ReLU
        return getattr(tvq, arch)(weights=None, quantize=False), wrap_shufflenet
    raise AssertionError(arch)


def unit_paths(backbone):
    """For a backbone cut at model.features_from (tltrain's chain: src/model/split.cpp), the paths
    of the modules it applies in order; None for a whole backbone."""
    def is_chain(m):
        return "tltrain.chain." in m._c._type().qualified_name()

    if not is_chain(backbone):
        return None
    paths = []

    def walk(m, prefix):
        for name, child in m.named_children():
            if is_chain(child):
                walk(child, prefix + name + ".")
            else:
                paths.append(prefix + name)
    walk(backbone, "")
    return paths


def chain_of(whole, paths, nn):
    """The modules at PATHS of WHOLE as nested Sequentials that keep the paths (so the names of the
    cut backbone's tensors), applied in order."""
    if paths is None:
        return whole
    top, seen = nn.Sequential(), []
    for p in paths:
        parts, parent = p.split("."), top
        for k, part in enumerate(parts[:-1]):
            prefix = ".".join(parts[:k + 1])
            if part not in parent._modules:
                parent.add_module(part, nn.Sequential())
                seen.append(prefix)
            # The chain's order is depth-first, so a container's modules are consecutive.
            assert seen[-1] == prefix or seen[-1].startswith(prefix + "."), f"{p} is out of order"
            parent = parent._modules[part]
        parent.add_module(parts[-1], whole.get_submodule(p))
    return top


def check_structure(backbone, chain, path):
    """Every leaf module of the file's backbone is a module of the same type in CHAIN (catches an
    activation that torchvision's twin would compute differently)."""
    ours = dict(chain.named_modules())
    for name, m in backbone.named_modules():
        if name and not any(True for _ in m.children()):
            kind = getattr(m, "original_name", type(m).__name__)
            mine = ours.get(name)
            if mine is None or type(mine).__name__ != kind:
                fail(2, f"{path}: backbone module {name} is a {kind}, torchvision's quantisable twin has "
                        f"{type(mine).__name__ if mine is not None else 'none'} there; this backbone cannot be "
                        "quantised as is (export fp32)")


def load_strict(chain, state, path, arch):
    """Every tensor of the file's backbone lands in CHAIN and CHAIN needs no other."""
    expected = chain.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} is {list(state[k].shape)} not {list(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        problems = [f"{len(x)} {what} ({', '.join(x[:3])}{', ...' if len(x) > 3 else ''})"
                    for x, what in ((unexpected, "backbone tensors with no place"), (missing, "tensors missing"),
                                    (wrong, "shape mismatches")) if x]
        fail(2, f"{path}: its backbone does not fit torchvision's quantisable {arch}: " + "; ".join(problems)
                + " (a backbone not exported by scripts/export_backbone.py?); export fp32")
    chain.load_state_dict(state, strict=True)


def relu6_to_capped(model, nn):
    """Each conv, BN, ReLU6 triple of MODEL becomes conv, BN, ReLU so that it fuses; returns the
    (parent, conv name) pairs whose fused module must get the [0, 6]-capped observer."""
    capped = []
    for parent in model.modules():
        keys = list(parent._modules)
        for i, name in enumerate(keys):
            if type(parent._modules[name]) is not nn.ReLU6:
                continue
            if not (i >= 2 and type(parent._modules[keys[i - 1]]) is nn.BatchNorm2d
                    and type(parent._modules[keys[i - 2]]) is nn.Conv2d):
                raise RuntimeError(f"a ReLU6 ({name}) that does not follow a conv + BatchNorm")
            parent._modules[name] = nn.ReLU(inplace=False)
            capped.append((parent, keys[i - 2]))
    return capped


def capped_qconfig(qconfig, cap, torch):
    """QCONFIG with an activation observer that clamps at CAP while calibrating (what the trained
    ReLU6 does) and whose int8 range ends at CAP at most (what makes the int8 op clamp there)."""
    base, kwargs = qconfig.activation.p.func, qconfig.activation.p.keywords

    class CappedObserver(base):
        def forward(self, x):
            return super().forward(torch.clamp(x, max=cap))

        def calculate_qparams(self):
            scale, zero_point = super().calculate_qparams()
            if float(scale) * (self.quant_max - int(zero_point)) > cap:
                return self._calculate_qparams(torch.tensor(0.0), torch.tensor(cap))
            return scale, zero_point

    return torch.ao.quantization.QConfig(activation=CappedObserver.with_args(**kwargs), weight=qconfig.weight)


# --------------------------------------------------------------------------------------------
# Inputs


def read_npy(path, np, torch):
    """CALIB.npy as a float32 tensor (numpy is there: torchvision needs it)."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        fail(2, f"{path}: not an npy file ({first_line(e)}); write float32 N x 3 x H x W with numpy.save")
    if not np.issubdtype(a.dtype, np.floating):
        fail(2, f"{path}: dtype {a.dtype}, not float32: store the preprocessed images (after mean/std), "
                "not raw pixels")
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # a copy: the map is read-only


def resolve_backend(choice, arch, torch):
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    # Measured with Debian's torch 1.13: onednn's int8 grouped convolution (resnext's, 32 channels a
    # group) fails from its second call on ("Trying to create tensor with negative dimension").
    grouped = arch in RESNETS and RESNETS[arch][2] > 1
    onednn_ok = not (grouped and torch.__version__.startswith("1."))
    if choice == "auto":
        x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
        order = ("fbgemm", "onednn", "qnnpack") if x86 else ("qnnpack", "fbgemm", "onednn")
        for e in order:
            if e in engines and (e != "onednn" or onednn_ok):
                return e
        fail(4, f"this torch ({torch.__version__}) has no quantised engine for {arch} (supported: {engines})")
    if choice not in engines:
        fail(4, f"--backend {choice}: this torch ({torch.__version__}) has only {', '.join(engines) or 'none'}; "
                "pick one of those, or auto")
    if choice == "onednn" and not onednn_ok:
        fail(4, f"--backend onednn: torch {torch.__version__}'s onednn int8 grouped convolution ({arch}'s) fails on "
                "repeated calls; use --backend qnnpack (auto picks it)")
    return choice


# --------------------------------------------------------------------------------------------
# The output module


def output_class(nn, torch, attrs, multilabel):
    """The scripted root: backbone (quant stub, int8 features, dequant stub), then the float head."""

    class TltrainInt8Model(nn.Module):
        __constants__ = ["multilabel"]

        def __init__(self, backbone, head):
            super().__init__()
            self.backbone = backbone
            self.head = head
            self.multilabel = multilabel
            for name, value in attrs.items():
                setattr(self, name, value)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x))

        @torch.jit.export
        def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
            if self.multilabel:
                return torch.sigmoid(self.forward(x))
            return torch.softmax(self.forward(x), 1)

    return TltrainInt8Model


def root_attributes(module, torch):
    """The input root's plain attributes (classes, input_size, ..., metadata_json), by value."""
    names = ("classes", "input_size", "resize", "mean", "std", "color_order", "pixel_scale", "interpolation",
             "arch", "metadata_json")
    attrs = OrderedDict((n, getattr(module, n)) for n in names if module._c.hasattr(n))
    try:  # any others the C++ exporter adds later travel too
        for name, value in torch._C._jit_debug_module_iterators(module._c)["named_attributes"]:
            if name != "training" and name not in attrs and isinstance(value, (bool, int, float, str, list)):
                attrs[name] = value
    except (AttributeError, KeyError):
        pass
    return attrs


def batches(x, n=BATCH):
    for i in range(0, x.shape[0], n):
        yield x[i:i + n]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="fp32 tltrain model file (tltrain export --out model.pt)")
    ap.add_argument("--calibration", required=True, help="float32 N x 3 x H x W .npy of preprocessed images")
    ap.add_argument("--out", required=True, help="int8 model file to write (atomically)")
    ap.add_argument("--backend", default="auto", choices=BACKENDS, help="quantised engine (default auto)")
    ap.add_argument("--source-name", default="", help="what messages and the metadata call the model (default --model): "
                    "tltrain export passes the checkpoint, since --model is its temporary file")
    args = ap.parse_args()
    name = args.source_name or args.model
    try:
        import numpy as np
        import torch
        import torchvision
        from torch import nn
    except ImportError as e:
        fail(3, f"{sys.executable} has no torch/torchvision/numpy ({e}): run with /usr/bin/python3 or install "
                "Debian's python3-torch python3-torchvision (scripts/setup.sh does)")

    # ---- validate everything before any work
    if not os.path.isfile(args.model):
        fail(2, f"{args.model}: no such file (write one with `tltrain export --checkpoint best.pt --out model.pt`)")
    if not os.path.isfile(args.calibration):
        fail(2, f"{args.calibration}: no such file (float32 N x 3 x H x W .npy of images preprocessed as the "
                "model's tltrain_model.json \"preprocess\" says)")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        fail(2, f"--out {args.out}: directory {out_dir} does not exist; create it first")
    extra = {MODEL_JSON: ""}
    try:
        module = torch.jit.load(args.model, map_location="cpu", _extra_files=extra)
    except Exception as e:  # torch raises RuntimeError subclasses with long C++ traces
        fail(2, f"{name}: not a TorchScript file ({first_line(e)})")
    if not extra[MODEL_JSON]:
        fail(2, f"{name}: no {MODEL_JSON} inside: not a tltrain model file (tltrain export writes one; "
                "a backbone from export_backbone.py is not one)")
    try:
        meta = json.loads(extra[MODEL_JSON])
        arch = meta["backbone"]["arch"]
        h, w = (int(v) for v in meta["preprocess"]["input_size"])
    except (ValueError, KeyError, TypeError) as e:
        fail(2, f"{name}: malformed {MODEL_JSON} ({first_line(e)}); re-export it with tltrain export")
    if meta.get("format") != "tltrain-model" or not (module._c.hasattr("backbone") and module._c.hasattr("head")):
        fail(2, f"{name}: not a tltrain model file (format {meta.get('format')!r}, needs submodules backbone "
                "and head); re-export it with tltrain export")
    if meta.get("precision", "fp32") != "fp32":
        fail(2, f"{name}: {meta['precision']} weights; quantise an fp32 model file (tltrain export without "
                "--precision)")
    if arch not in QUANTISABLE:
        fail(4, f"{name}: backbone {arch} has no quantisable form in torchvision; int8 needs one of: "
                + ", ".join(QUANTISABLE) + "; export fp32 or train one of these")
    calib = read_npy(args.calibration, np, torch)
    if calib.dim() != 4 or calib.shape[1] != 3 or tuple(calib.shape[2:]) != (h, w):
        fail(2, f"{args.calibration}: shape {list(calib.shape)}, the model takes N x 3 x {h} x {w}; write the images "
                f"preprocessed to its input size {h} x {w}")
    n = int(calib.shape[0])
    if n < 1:
        fail(2, f"{args.calibration}: no images (N = 0); calibration needs at least one, typically 100 or more")
    if not bool(torch.isfinite(calib).all()):
        fail(2, f"{args.calibration}: holds NaN or infinite values; write finite preprocessed images")
    backend = resolve_backend(args.backend, arch, torch)
    torch.backends.quantized.engine = backend
    # Observers of modules the forward skips (the residual add of a block without a shortcut) never
    # run; convert warns for each, and those modules do nothing.
    warnings.filterwarnings("ignore", message="must run observer before calling calculate_qparams")

    # ---- the float twin, checked against the file's backbone
    module.eval()
    backbone = module.backbone
    qconfig = torch.ao.quantization.get_default_qconfig(backend)
    torch.manual_seed(0)
    try:
        model, wrap = build_quantisable(arch, nn)
        model.eval()
        paths = unit_paths(backbone)
        chain = chain_of(wrap(model), paths, nn)
    except Exception as e:
        fail(5, f"cannot build torchvision's quantisable {arch} ({type(e).__name__}: {first_line(e)})")
    check_structure(backbone, chain, name)
    load_strict(chain, backbone.state_dict(), name, arch)
    first = calib[:BATCH]

    def rel(a, b):
        return float((a - b).abs().max() / max(1.0, float(b.abs().max())))

    with torch.no_grad():
        want = backbone(first)
        diff = rel(chain(first), want)
    if diff > 1e-4:
        fail(5, f"torchvision's quantisable {arch} with {name}'s backbone tensors differs from that backbone by "
                f"{diff:g} (relative): a bug in the name mapping here")

    # ---- fuse, observe, calibrate, convert
    try:
        capped = relu6_to_capped(model, nn)
        model.eval()  # the new ReLUs too: fusion wants one mode
        model.fuse_model(is_qat=False)
        for parent, name in capped:
            fused = parent._modules[name]
            assert isinstance(fused, torch.ao.nn.intrinsic.ConvReLU2d), type(fused)
            fused.qconfig = capped_qconfig(qconfig, 6.0, torch)
        features = nn.Sequential(OrderedDict(quant=torch.ao.quantization.QuantStub(),
                                             features=chain_of(wrap(model), paths, nn),
                                             dequant=torch.ao.quantization.DeQuantStub()))
        features.eval()
        features.qconfig = qconfig
        torch.ao.quantization.prepare(features, inplace=True)
        with torch.no_grad():
            for k, xb in enumerate(batches(calib)):
                y = features(xb)
                if k == 0:  # fused and clamped, before rounding: still the trained function
                    diff = rel(y, want)
                    if diff > 1e-4:
                        raise RuntimeError(f"the fused float backbone differs from the trained one by {diff:g}")
        torch.ao.quantization.convert(features, inplace=True)
    except Exception as e:
        fail(5, f"quantising {arch} with {backend} failed ({type(e).__name__}: {first_line(e)})")

    # ---- the output module
    attrs = root_attributes(module, torch)
    multilabel = meta.get("head", {}).get("output") == "multilabel"
    root = output_class(nn, torch, attrs, multilabel)(features, module.head).eval()
    how = "scripted"
    try:
        scripted = torch.jit.script(root)
    except Exception as e:
        print(f"quantize_int8: note: torch.jit.script failed ({type(e).__name__}: {first_line(e)}); "
              "falling back to torch.jit.trace (forward only, batch shape free)", file=sys.stderr)
        try:  # both methods, so the file answers predict_proba as a scripted one does
            with torch.no_grad():
                scripted = torch.jit.trace_module(root, {"forward": first, "predict_proba": first}, check_trace=False)
        except Exception as e2:
            fail(5, f"the int8 {arch} module can be neither scripted nor traced ({type(e2).__name__}: {first_line(e2)})")
        how = "traced"
    scripted.eval()

    # ---- int8 against fp32 on the calibration images
    with torch.no_grad():
        fp32 = torch.cat([module(xb) for xb in batches(calib)])
        try:
            int8 = torch.cat([scripted(xb) for xb in batches(calib)])
        except Exception as e:
            fail(5, f"the int8 {arch} module does not run ({type(e).__name__}: {first_line(e)})")
    if int8.shape != fp32.shape:
        fail(2, f"the int8 module gives logits of shape {list(int8.shape)}, the fp32 model {list(fp32.shape)}: "
                "not written; export fp32")
    if not bool(torch.isfinite(int8).all()):
        fail(2, "the int8 module gives NaN or infinite logits on the calibration images: not written; "
                "check the calibration images' preprocessing, or export fp32")
    try:
        with torch.no_grad():  # an image's logits must not depend on its batch, nor on earlier calls
            alone = torch.cat([scripted(first[i:i + 1]) for i in range(min(4, first.shape[0]))])
    except Exception as e:
        fail(5, f"the int8 {arch} module does not run on one image after a batch ({type(e).__name__}: {first_line(e)}): "
                f"a defect of this torch's {backend} kernels; try another --backend")
    batch_diff = rel(alone, int8[:alone.shape[0]])
    if batch_diff > 1e-4:
        fail(5, f"the int8 module gives other logits for an image alone than in a batch (by {batch_diff:g}): "
                f"a defect of this torch's {backend} kernels; try another --backend")
    agreement = float((int8.argmax(1) == fp32.argmax(1)).double().mean())
    max_rel = rel(int8, fp32)

    meta["precision"] = "int8"
    meta["quantization"] = {
        "scheme": "post-training static", "backend": backend, "calibration_images": n,
        "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
        "activations": ACTIVATIONS.get("mobilenet_v3" if arch.startswith("mobilenet_v3") else arch, "relu as trained"),
        "weights": "int8 per-channel" if backend != "qnnpack" else "int8 per-tensor",
        "torchscript": how, "head": "fp32", "source_model": name,
        "check": {"images": n, "top1_agreement": agreement, "max_rel_diff": max_rel},
        "quantized_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load": f"set the quantised engine to {backend} before loading (Python: torch.backends.quantized.engine = "
                f"'{backend}')",
    }
    if scripted._c.hasattr("metadata_json"):
        scripted.metadata_json = json.dumps(meta, ensure_ascii=False)

    try:
        with atomic_output(args.out, ".pt") as tmp:
            torch.jit.save(scripted, tmp, _extra_files={MODEL_JSON: json.dumps(meta, indent=2, ensure_ascii=False)})
            with torch.no_grad():  # what was written loads and computes what was checked
                again = torch.jit.load(tmp, map_location="cpu")(first)
            if rel(again, int8[:first.shape[0]]) > 1e-6:
                raise RuntimeError("the saved file computes other logits than the module it was saved from")
    except Exception as e:
        fail(5, f"writing {args.out} failed ({type(e).__name__}: {first_line(e)})")
    print(f"quantized {arch} ({backend}, {how}, {n} calibration images): top-1 agreement {agreement:.4f}, "
          f"max relative logit difference {max_rel:.4g}", file=sys.stderr)
    print(json.dumps({"out": args.out, "arch": arch, "backend": backend, "calibration": n,
                      "bytes": os.path.getsize(args.out), "fp32_bytes": os.path.getsize(args.model),
                      "top1_agreement": agreement, "max_rel_diff": max_rel}))


if __name__ == "__main__":
    main()
