#!/usr/bin/python3
"""Export torchvision feature extractors as tltrain backbones (docs/backbone-format.md, docs/backbones.md).

The output is a TorchScript module whose forward maps a normalized N x 3 x H x W batch to the
last feature map N x C x h x w (no pooling, no classifier), with the metadata that tltrain needs
(preprocessing, freezable blocks, layers, weight provenance) stored inside the file as the extra
file `tltrain_meta.json`.

Usage:
  /usr/bin/python3 scripts/export_backbone.py --arch ARCH --weights SOURCE --out FILE.pt [--input-size N]
  /usr/bin/python3 scripts/export_backbone.py --arch ARCH,ARCH...|all --weights imagenet|none --out-dir DIR
  /usr/bin/python3 scripts/export_backbone.py --list [markdown] [--arch ARCH,ARCH...]

  --arch        a torchvision ImageNet classifier: resnet*, resnext*, wide_resnet*, vgg*[_bn],
                mobilenet_v2, mobilenet_v3_*, efficientnet_b0..b7, efficientnet_v2_*, inception_v3,
                googlenet, densenet*, regnet_*, convnext_*, shufflenet_v2_*, mnasnet*, vit_*,
                swin_*, swin_v2_*, maxvit_t, alexnet, squeezenet* (`--list` prints them all);
                with --out-dir also a comma-separated list, or `all`
  --weights     imagenet   torchvision's ImageNet weights (taken from torch hub's cache when present,
                           downloaded otherwise)
                none       random initialisation (no transfer learning; for tests only)
                PATH.pth   a state dict of the same torchvision architecture (plain, or wrapped
                           as {'state_dict': ...} or {'model': ...}); one --arch only
  --out         where to write the backbone (written atomically)
  --out-dir     write DIR/ARCH.pt and DIR/ARCH.meta.json for every --arch, in one process
  --input-size  default square input size recorded in the metadata (default: the architecture's
                native size, from the evaluation transform of its torchvision weights)
  --meta-out    with --out: also write the embedded metadata to this file
  --list        print every architecture with its input size, resize, output, blocks, layers and
                parameters (builds each model once with random weights; slow for the giants)

Examples:
  scripts/export_backbone.py --arch mobilenet_v2 --weights imagenet --out models/mobilenet_v2.pt
  scripts/export_backbone.py --arch resnet18 --weights ~/resnet18-f37072fd.pth --out resnet18.pt
  scripts/export_backbone.py --arch resnet50,efficientnet_b3 --weights imagenet --out-dir models

Exit codes: 0 ok, 2 usage (bad arguments, weights that do not fit --arch), 3 unreadable or
malformed input file, 4 runtime/network failure. With several architectures every one is
attempted and the first failure's code is returned.
"""

import argparse
import datetime
import gc
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import time
import urllib.error
import warnings
from collections import OrderedDict
from collections.abc import Mapping

EXIT_USAGE, EXIT_BAD_FILE, EXIT_RUNTIME = 2, 3, 4

try:
    import torch
    import torchvision
    from torch import nn
    from torchvision import models
except ImportError as e:  # the `python3` on PATH may be an interpreter without torch
    print(f"export_backbone: error: cannot import torch/torchvision in {sys.executable} ({e}); "
          "run the script with /usr/bin/python3 or install python3-torch python3-torchvision.", file=sys.stderr)
    sys.exit(4)

if not hasattr(models, "get_model_weights"):  # the weights registry arrived in torchvision 0.14
    print(f"export_backbone: error: torchvision {torchvision.__version__} is too old (0.14 or newer is needed "
          "for its model and weights registry); run the script with /usr/bin/python3 (Debian's python3-torchvision).",
          file=sys.stderr)
    sys.exit(4)

# Preprocessing comes from the first of these weights that an architecture has: IMAGENET1K_V1's
# evaluation transform is the classic one (resnet50's V2 weights expect resize 232, for example);
# vit_h_14 and regnet_y_128gf only have SWAG weights, whose linear-probe variant keeps input 224.
PRESETS = ("IMAGENET1K_V1", "IMAGENET1K_SWAG_LINEAR_V1")
# State-dict entries that are buffers, not parameters (torchvision's num_params counts parameters).
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", "relative_position_index",
                   "relative_coords_table")


class ExportError(Exception):
    """A user-facing failure: one sentence for stderr plus the exit code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def first_line(e):
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


# --------------------------------------------------------------------------------------------
# Wrappers. They keep torchvision's module objects (and hence their parameter names, up to the
# regrouping below) so that block and layer names are plain module paths inside the scripted
# module.


class Backbone(nn.Sequential):
    """The exported module. Its forward applies its children in order and nothing else: tltrain
    cuts a backbone between blocks by chaining those children with plain Sequentials opened up
    (src/model/split.cpp), so every operation of the forward has to live inside a child."""


class PatchEmbedding(nn.Module):
    """ViT's input stage as one module (torchvision spreads it over VisionTransformer.forward and
    Encoder.forward): patchify, flatten to tokens, prepend the class token, add the positions."""

    def __init__(self, vit):
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # N x D x h x w -> N x hw x D
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


class TokensToFeatureMap(nn.Module):
    """ViT's patch tokens as a feature map: drops the class token, N x (1+hw) x D -> N x D x h x w."""

    def __init__(self, h: int, w: int):
        super().__init__()
        self.h = h
        self.w = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 1:].transpose(1, 2).reshape(x.shape[0], x.shape[2], self.h, self.w)


def named(container, *names):
    """A Sequential of CONTAINER's children NAMES, keeping their names."""
    return nn.Sequential(OrderedDict((n, getattr(container, n)) for n in names))


def child_paths(container, prefix):
    return [f"{prefix}.{name}" for name, _ in container.named_children()]


def stage_paths(container, prefix, stages):
    """PREFIX.i for each child i of CONTAINER, or PREFIX.i.j for each child j of the children
    whose position is in STAGES (Sequentials of residual blocks: each block is its own block)."""
    paths = []
    for k, (name, child) in enumerate(container.named_children()):
        paths += child_paths(child, f"{prefix}.{name}") if k in stages else [f"{prefix}.{name}"]
    return paths


def group_at(container, starts):
    """A flat Sequential regrouped so that each child for which STARTS is true opens a group that
    also holds the children after it up to the next start (VGG's conv, relu, conv, relu, pool
    becomes [conv, relu], [conv, relu, pool]), so that ReLUs and poolings belong to a block. A
    group keeps the index of its first child as its name; a group of one is the child itself."""
    groups = OrderedDict()
    for name, child in container.named_children():
        if starts(child) or not groups:
            groups[name] = []
        groups[next(reversed(groups))].append(child)
    return nn.Sequential(OrderedDict((k, v[0] if len(v) == 1 else nn.Sequential(*v)) for k, v in groups.items()))


def wrap_resnet(m):
    # conv1/bn1/relu/maxpool are grouped into `stem` so that the stem is one freezable block like
    # the residual blocks.
    b = Backbone(OrderedDict(stem=nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool), layer1=m.layer1,
                             layer2=m.layer2, layer3=m.layer3, layer4=m.layer4))
    return b, ["stem"] + [p for L in range(1, 5) for p in child_paths(getattr(m, f"layer{L}"), f"layer{L}")]


def wrap_features(m):
    # mobilenet_v2/v3: `features` ends at the last feature map and each of its children is a block.
    return Backbone(OrderedDict(features=m.features)), child_paths(m.features, "features")


def wrap_efficientnet(m):
    # features.0 is the stem conv, features.1 .. n-2 are stages of MBConv blocks and features.n-1
    # the final 1x1 conv; each MBConv is its own block so that unfreezing can be fine grained.
    n = len(m.features)
    return Backbone(OrderedDict(features=m.features)), stage_paths(m.features, "features", range(1, n - 1))


def wrap_convnext(m):
    # Even children of `features` are the stem and the downsampling layers, odd ones stages of
    # CNBlocks. The classifier's LayerNorm2d runs after the pooling, so it stays with the classifier.
    return Backbone(OrderedDict(features=m.features)), stage_paths(m.features, "features", range(1, len(m.features), 2))


def wrap_swin(m):
    # As ConvNeXt (patch embedding, stages of Swin blocks, patch merging), plus the final
    # LayerNorm (per position, so it belongs before the pooling) and the N x H x W x C ->
    # N x C x H x W permutation.
    b = Backbone(OrderedDict(features=m.features, norm=nn.Sequential(m.norm, m.permute)))
    return b, stage_paths(m.features, "features", range(1, len(m.features), 2)) + ["norm"]


def wrap_vit(m):
    # Patch embedding, each encoder layer, and the final LayerNorm followed by the patch tokens
    # reshaped to a feature map (the class token that torchvision's head reads is dropped).
    side = m.image_size // m.patch_size
    b = Backbone(OrderedDict(embedding=PatchEmbedding(m), encoder=m.encoder.layers,
                             norm=nn.Sequential(m.encoder.ln, TokensToFeatureMap(side, side))))
    return b, ["embedding"] + child_paths(m.encoder.layers, "encoder") + ["norm"]


def wrap_maxvit(m):
    # The stem and each MaxViT layer (MBConv + block attention + grid attention); torchvision's
    # ModuleLists become Sequentials so that the forward is a chain.
    blocks = nn.Sequential(*[nn.Sequential(OrderedDict(layers=nn.Sequential(*blk.layers))) for blk in m.blocks])
    b = Backbone(OrderedDict(stem=m.stem, blocks=blocks))
    return b, ["stem"] + [f"blocks.{i}.layers.{j}" for i, blk in enumerate(m.blocks) for j in range(len(blk.layers))]


def wrap_grouped(starts):
    # vgg*, alexnet, squeezenet: `features` is flat; each convolution (or Fire module) starts a
    # block holding the BatchNorm, ReLU and max-pool after it. Block features.K starts with
    # torchvision's features.K, so vgg16's blocks keep their names.
    def wrap(m):
        features = group_at(m.features, lambda c: isinstance(c, starts))
        return Backbone(OrderedDict(features=features)), child_paths(features, "features")
    return wrap


def wrap_inception_v3(m):
    # The convolutions and max-pools before the first Inception module are the stem; each Mixed_*
    # module is a block. AuxLogits, a training-only side head, is not built at all.
    stem = named(m, "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                 "Conv2d_4a_3x3", "maxpool2")
    mixed = [n for n, _ in m.named_children() if n.startswith("Mixed_")]
    return Backbone(OrderedDict([("stem", stem)] + [(n, getattr(m, n)) for n in mixed])), ["stem"] + mixed


def wrap_googlenet(m):
    # As Inception V3; the max-pools between stages go with the Inception module before them.
    parts = [("stem", named(m, "conv1", "maxpool1", "conv2", "conv3", "maxpool2"))]
    for n in ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
              "inception4e", "inception5a", "inception5b"):
        pool = {"inception3b": "maxpool3", "inception4e": "maxpool4"}.get(n)
        parts.append((n, named(m, n, pool) if pool else getattr(m, n)))
    return Backbone(OrderedDict(parts)), [n for n, _ in parts]


def wrap_densenet(m):
    # conv0..pool0 are the stem, then each dense block and transition is a block (a dense block
    # concatenates its layers' outputs, so it cannot be cut inside), and torchvision's final
    # F.relu becomes a module next to norm5.
    f = m.features
    body = [(n, c) for n, c in f.named_children() if n.startswith(("denseblock", "transition"))]
    final = nn.Sequential(OrderedDict(norm5=f.norm5, relu5=nn.ReLU(inplace=True)))
    features = nn.Sequential(OrderedDict([("stem", named(f, "conv0", "norm0", "relu0", "pool0"))] + body
                                         + [("final", final)]))
    return Backbone(OrderedDict(features=features)), child_paths(features, "features")


def wrap_regnet(m):
    # The stem and each residual block; the stages (AnyStage, a Sequential subclass) become plain
    # Sequentials so that tltrain opens them up when cutting.
    trunk = nn.Sequential(OrderedDict((n, nn.Sequential(OrderedDict(s.named_children())))
                                      for n, s in m.trunk_output.named_children()))
    b = Backbone(OrderedDict(stem=m.stem, trunk_output=trunk))
    return b, ["stem"] + [p for n, s in trunk.named_children() for p in child_paths(s, f"trunk_output.{n}")]


def wrap_shufflenet(m):
    # conv1 + maxpool are the stem, then each unit of stages 2-4, then conv5.
    b = Backbone(OrderedDict(stem=named(m, "conv1", "maxpool"), stage2=m.stage2, stage3=m.stage3,
                             stage4=m.stage4, conv5=m.conv5))
    return b, ["stem"] + [p for s in ("stage2", "stage3", "stage4") for p in child_paths(getattr(m, s), s)] + ["conv5"]


def wrap_mnasnet(m):
    # torchvision's flat `layers`: 0-7 the stem (conv, separable conv), 8-13 stacks of inverted
    # residuals (each residual a block), 14-16 the final 1x1 conv. Groups keep their first index.
    mods = list(m.layers.children())
    layers = nn.Sequential(OrderedDict([("0", nn.Sequential(*mods[:8]))] + [(str(i), mods[i]) for i in range(8, 14)]
                                       + [("14", nn.Sequential(*mods[14:]))]))
    return Backbone(OrderedDict(layers=layers)), (
        ["layers.0"] + [p for i in range(8, 14) for p in child_paths(mods[i], f"layers.{i}")] + ["layers.14"])


def adapt_vit_state(state, model, size):
    """Pretrained position embeddings resized to another --input-size (torchvision's own helper)."""
    key = "encoder.pos_embedding"
    if key in state and state[key].shape != model.encoder.pos_embedding.shape:
        from torchvision.models.vision_transformer import interpolate_embeddings
        state = dict(interpolate_embeddings(size, model.patch_size, OrderedDict(state)))
    return state


def has(key, *also, without=None):
    """Evidence test for guess_arch: KEY (and ALSO) present, WITHOUT absent."""
    def test(keys):
        ok = key in keys and all(k in keys for k in also) and (without is None or without not in keys)
        return key if ok else None
    return test


def has_prefix(prefix):
    def test(keys):
        return next((k for k in keys if k.startswith(prefix)), None)
    return test


class Family:
    """A torchvision model family: its architectures (regular expressions, listed in this order,
    each group by size), how its backbone is cut out, and how its state dicts are recognised."""

    def __init__(self, name, patterns, wrap, evidence, build=None, aux_keys=(), tf_inputs=False,
                 adapt_state=None, size_rule=None):
        self.name, self.patterns, self.wrap, self.evidence = name, patterns, wrap, evidence
        self.build = build or (lambda size: {})  # extra builder arguments at input size SIZE
        self.aux_keys = aux_keys  # state-dict prefixes of training-only heads, dropped before loading
        # Google's Inception weights expect pixels scaled to [-1, 1]; torchvision converts ImageNet-
        # normalized input in the model (transform_input). Recording mean = std = 0.5 instead does the
        # same without an operation outside the chain.
        self.tf_inputs = tf_inputs
        self.adapt_state = adapt_state or (lambda state, model, size: state)
        self.size_rule = size_rule  # (arch, size) -> problem with SIZE or None


def vit_size_rule(arch, size):
    patch = int(arch.rsplit("_", 1)[1])
    return None if size % patch == 0 else f"must be a multiple of {arch}'s patch size {patch}"


def maxvit_size_rule(arch, size):
    # Four stride-2 stages after a stride-2 stem, each partitioned into 7 x 7 windows and grids.
    return None if size % 224 == 0 else "must be a multiple of 224 (7 x 7 partitions at 1/32 of the input)"


FAMILIES = [
    Family("resnet", [r"resnet\d+", r"resnext\d+_\d+x\d+d", r"wide_resnet\d+_2"], wrap_resnet,
           has("layer1.0.conv1.weight")),
    Family("vgg", [r"vgg\d+", r"vgg\d+_bn"], wrap_grouped(nn.Conv2d), has("features.0.weight", "classifier.3.weight")),
    Family("mobilenet_v2", [r"mobilenet_v2"], wrap_features, has("features.1.conv.0.0.weight")),
    Family("mobilenet_v3", [r"mobilenet_v3_small", r"mobilenet_v3_large"], wrap_features,
           has("features.1.block.0.0.weight")),
    Family("efficientnet", [r"efficientnet_b\d"], wrap_efficientnet, has("features.1.0.block.1.fc1.weight")),
    Family("efficientnet_v2", [r"efficientnet_v2_[sml]"], wrap_efficientnet,
           has("features.1.0.block.0.0.weight", without="features.1.0.block.1.fc1.weight")),
    Family("inception_v3", [r"inception_v3"], wrap_inception_v3, has("Mixed_5b.branch1x1.conv.weight"),
           build=lambda size: dict(aux_logits=False, init_weights=True), aux_keys=("AuxLogits.",), tf_inputs=True),
    Family("googlenet", [r"googlenet"], wrap_googlenet, has("inception3a.branch1.conv.weight"),
           build=lambda size: dict(aux_logits=False, init_weights=True), aux_keys=("aux1.", "aux2."), tf_inputs=True),
    Family("densenet", [r"densenet\d+"], wrap_densenet, has("features.denseblock1.denselayer1.conv1.weight")),
    Family("regnet", [r"regnet_x_\w+", r"regnet_y_\w+"], wrap_regnet, has("trunk_output.block1.block1-0.f.a.0.weight")),
    Family("convnext", [r"convnext_\w+"], wrap_convnext, has("features.1.0.layer_scale")),
    Family("shufflenet_v2", [r"shufflenet_v2_x\d_\d"], wrap_shufflenet, has("stage2.0.branch1.0.weight")),
    Family("mnasnet", [r"mnasnet\d_\d+"], wrap_mnasnet, has("layers.8.0.layers.0.weight")),
    Family("vit", [r"vit_[bl]_\d+", r"vit_h_\d+"], wrap_vit, has("encoder.layers.encoder_layer_0.ln_1.weight"),
           build=lambda size: dict(image_size=size), adapt_state=adapt_vit_state, size_rule=vit_size_rule),
    Family("swin", [r"swin_[tsb]"], wrap_swin,
           has("features.1.0.attn.relative_position_bias_table", without="features.1.0.attn.logit_scale")),
    Family("swin_v2", [r"swin_v2_[tsb]"], wrap_swin, has("features.1.0.attn.logit_scale")),
    Family("maxvit", [r"maxvit_t"], wrap_maxvit, has_prefix("blocks.0.layers.0.layers.MBconv."),
           build=lambda size: dict(input_size=(size, size)), size_rule=maxvit_size_rule),
    Family("alexnet", [r"alexnet"], wrap_grouped(nn.Conv2d),
           has("features.0.weight", "classifier.4.weight")),
    Family("squeezenet", [r"squeezenet1_[01]"], wrap_grouped((nn.Conv2d, models.squeezenet.Fire)),
           has("features.3.squeeze.weight")),
]


class ArchSpec:
    """An architecture with its preprocessing, read from its torchvision weights' evaluation
    transform so that nothing here is a hand-typed copy."""

    def __init__(self, arch, family):
        self.arch, self.family = arch, family
        enum = models.get_model_weights(arch)
        w = next((enum[p] for p in PRESETS if p in enum.__members__), next(iter(enum)))
        t = w.transforms()
        self.preset = f"{enum.__name__}.{w.name}"
        self.url = w.url
        self.input_size, self.resize = int(t.crop_size[0]), int(t.resize_size[0])
        self.interpolation = t.interpolation.value
        self.mean, self.std = ([0.5] * 3, [0.5] * 3) if family.tf_inputs else (list(t.mean), list(t.std))
        # Every published variant's parameter count, for telling apart a family's state dicts.
        self.param_counts = {v.meta["num_params"] for v in enum}
        self.num_params = w.meta["num_params"]

    def resize_for(self, size):
        """The evaluation resize at input SIZE, keeping the preset's crop ratio (224 -> 256)."""
        return self.resize if size == self.input_size else round(size * self.resize / self.input_size)


def find_archs():
    """Every torchvision classifier that a family covers, family by family, each group by size."""
    names = models.list_models(module=models)
    specs = OrderedDict()
    for family in FAMILIES:
        for pattern in family.patterns:
            group = [ArchSpec(n, family) for n in names if re.fullmatch(pattern, n)]
            for spec in sorted(group, key=lambda s: s.num_params):
                specs[spec.arch] = spec
    return specs


ARCHS = find_archs()


# --------------------------------------------------------------------------------------------
# Blocks and layers


def is_batchnorm(m):
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def per_sample_shape(out):
    """The shape of a module's output without the batch dimension (the first tensor of a tuple)."""
    if isinstance(out, (tuple, list)):
        out = next((o for o in out if torch.is_tensor(o)), None)
    return [int(s) for s in out.shape[1:]] if torch.is_tensor(out) else None


def record_forward(wrapper, x):
    """One eager forward that records, for every module, the order of its first call and the
    per-sample shape of that call's output."""
    first_call, out_shape = {}, {}

    def pre_hook(m, _inputs):
        first_call.setdefault(m, len(first_call))

    def post_hook(m, _inputs, out):
        if m not in out_shape:
            out_shape[m] = per_sample_shape(out)

    handles = []
    for m in wrapper.modules():
        handles += [m.register_forward_pre_hook(pre_hook), m.register_forward_hook(post_hook)]
    try:
        with torch.no_grad():
            y = wrapper(x)
    finally:
        for h in handles:
            h.remove()
    return y, first_call, out_shape


def owns_tensors(m):
    return any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))


def describe_blocks(wrapper, names, first_call, out_shape):
    """The metadata's block list, checking what docs/backbone-format.md promises: every parameter
    (and buffer) is owned by exactly one block, and the blocks run in list order."""
    modules = dict(wrapper.named_modules())
    nested = [(a, b) for a in names for b in names if a.startswith(b + ".")]
    assert not nested and len(set(names)) == len(names), f"blocks inside blocks: {nested or names}"
    blocks = []
    for name in names:
        mod = modules[name]
        blocks.append({
            "name": name,
            "params": sum(p.numel() for p in mod.parameters()),
            "batchnorms": sum(is_batchnorm(m) for m in mod.modules()),
            "output_shape": out_shape.get(mod),
        })

    # The trailing "." matters: features.1 must not claim features.10's parameters.
    for kind, named_tensors in (("parameter", wrapper.named_parameters()), ("buffer", wrapper.named_buffers())):
        for pname, _ in named_tensors:
            owners = [n for n in names if pname.startswith(n + ".")]
            assert len(owners) == 1, f"{kind} {pname} is owned by {owners or 'no block'}"
    assert sum(b["params"] for b in blocks) == sum(p.numel() for p in wrapper.parameters())
    assert sum(b["batchnorms"] for b in blocks) == sum(is_batchnorm(m) for m in wrapper.modules())

    # Forward order, observed rather than assumed.
    uncalled = [n for n in names if out_shape.get(modules[n]) is None]
    assert not uncalled, f"blocks never called in the forward, or without a tensor output: {uncalled}"
    order = sorted(names, key=lambda n: first_call[modules[n]])
    assert order == names, f"blocks do not run in the listed order: {order}"
    return blocks


def describe_layers(wrapper, names, first_call, out_shape):
    """The metadata's layer list: every module that has no children or owns a parameter or buffer
    itself, in the order of its first call, checking that every parameter and buffer has exactly
    one owning layer and that the layers fall into the blocks in block order."""
    assert not owns_tensors(wrapper), "the wrapper itself owns parameters; they must live in a block"
    seen = {}
    for name, m in wrapper.named_modules(remove_duplicate=False):
        if owns_tensors(m):  # C++ would see a shared module's parameters under two names
            assert seen.setdefault(m, name) == name, f"{name} and {seen[m]} are one module with parameters"

    modules = dict(wrapper.named_modules())
    candidates = [(k, n, m) for k, (n, m) in enumerate(modules.items())
                  if n and (owns_tensors(m) or not any(True for _ in m.children()))]
    ordered = []
    for k, name, m in candidates:
        if m in first_call:
            ordered.append(((first_call[m], 0, k), name, m))
        elif owns_tensors(m):
            # nn.MultiheadAttention's out_proj and Swin's qkv/proj are applied functionally by
            # their parent (F.linear on their weights): listed right after it, without a shape.
            parent = modules.get(name.rpartition(".")[0])
            assert parent is not None and parent is not wrapper and parent in first_call, \
                f"layer {name} owns parameters but is never called"
            ordered.append(((first_call[parent], 1, k), name, m))
        # a parameter-free module that is never called (an unused activation) is no layer
    ordered.sort(key=lambda t: t[0])

    layers = []
    for _, name, m in ordered:
        layer = {"name": name, "type": type(m).__name__,
                 "params": sum(p.numel() for p in m.parameters(recurse=False)), "batchnorm": is_batchnorm(m)}
        if out_shape.get(m) is not None:
            layer["output_shape"] = out_shape[m]
        layers.append(layer)

    layer_names = {la["name"] for la in layers}
    for kind, named_tensors in (("parameter", wrapper.named_parameters()), ("buffer", wrapper.named_buffers())):
        for pname, _ in named_tensors:
            assert pname.rpartition(".")[0] in layer_names, f"{kind} {pname} is owned by no layer"
    last = 0
    for la in layers:
        owners = [i for i, b in enumerate(names) if la["name"] == b or la["name"].startswith(b + ".")]
        assert len(owners) == 1, f"layer {la['name']} belongs to {[names[i] for i in owners] or 'no block'}"
        assert owners[0] >= last, f"layer {la['name']} of block {names[owners[0]]} runs after block {names[last]}"
        last = owners[0]
    return layers


def is_plain_sequential(m):
    """As src/model/split.cpp decides it, from the TorchScript type name."""
    q = m._c._type().qualified_name()
    return "torch.nn.modules.container." in q and q.endswith(".Sequential")


def chain_units(module, block_names, prefix=""):
    """The modules that tltrain chains when it cuts MODULE between blocks (src/model/split.cpp):
    its children in order, plain Sequentials opened up unless they are a block."""
    for name, child in module.named_children():
        path = prefix + name
        if path not in block_names and is_plain_sequential(child):
            yield from chain_units(child, block_names, path + ".")
        else:
            yield path, child


def max_diff(a, b):
    """Largest absolute difference, relative to the size of the values (random-init features can be large)."""
    return ((a - b).abs().max() / max(1.0, a.abs().max().item())).item()


# --------------------------------------------------------------------------------------------
# Weights


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def params_at_1000_classes(state):
    """Parameter elements of STATE as if its last layer (the classifier) had ImageNet's 1000
    outputs, so that fine-tuned checkpoints compare with torchvision's num_params too."""
    params = OrderedDict((k, v) for k, v in state.items() if not k.endswith(BUFFER_SUFFIXES))
    total = sum(v.numel() for v in params.values())
    if params:
        head = next(reversed(params)).rpartition(".")[0]
        w = params.get(head + ".weight")
        if w is not None and w.dim() >= 2:
            total += (1000 - w.shape[0]) * (w[0].numel() + (head + ".bias" in params))
    return total


def guess_arch(state):
    """(architectures, a key that gives their family away) for the torchvision model a state dict
    looks like, or ([], None). Within the family, the parameter count narrows it down to the
    variants it fits; when none fits exactly, every architecture of the family is returned."""
    keys = set(state)
    for family in FAMILIES:
        key = family.evidence(keys)
        if key:
            archs = [s.arch for s in ARCHS.values() if s.family is family]
            n = params_at_1000_classes(state)
            return [a for a in archs if n in ARCHS[a].param_counts] or archs, key
    return [], None


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
        guesses, family_key = guess_arch(state)
        if guesses and arch not in guesses:  # the common mistake: right file, wrong --arch (or vice versa)
            guess = guesses[0] if len(guesses) == 1 else f"{ARCHS[guesses[0]].family.name} ({short_list(guesses)})"
            clue = (f"it has {guess} keys such as {unexpected[0]}" if unexpected else
                    f"its {wrong_shape[0]}" if wrong_shape else f"it has {guess} keys such as {family_key}")
            raise ExportError(EXIT_USAGE, f"weights file '{path}' does not fit torchvision's {arch}: "
                                          f"is this {a_(guess)} checkpoint? {clue}"
                                          + (f" and lacks {arch}'s {missing[0]}" if missing else "")
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


def imagenet_weights_file(spec):
    """Path of torchvision's ImageNet checkpoint in torch hub's cache, downloading it if needed."""
    arch, url = spec.arch, spec.url
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


def resolve_weights(spec, source):
    """(the metadata's weights record, the state dict or None, its path) for --weights SOURCE."""
    arch = spec.arch
    if source == "none":
        return {"source": "none", "file": None, "sha256": None}, None, None
    if source == "imagenet":
        path, url = imagenet_weights_file(spec)
        kind, file_name = "imagenet", os.path.basename(url)
        fix = f"the cached download may be corrupt: delete '{path}' and run again."
    else:
        path = os.path.expanduser(source)
        kind, file_name = "file", os.path.basename(path)
        fix = f"pass {a_(arch)} state dict saved with torch.save(model.state_dict(), PATH)."
    state = read_state_dict(path, arch, fix)
    # Training-only side heads (Inception's AuxLogits, GoogLeNet's aux1/aux2) are no part of the backbone.
    state = {k: v for k, v in state.items() if not k.startswith(spec.family.aux_keys)}
    return {"source": kind, "file": file_name, "sha256": sha256_of(path)}, state, path


# --------------------------------------------------------------------------------------------
# Export


class Analysis:
    """A backbone cut out of a torchvision model, with its blocks and layers described."""

    def __init__(self, spec, size, state=None, path=None, batch=2):
        arch, family = spec.arch, spec.family
        torch.manual_seed(0)  # reproducible files for --weights none, and the same test input
        try:
            model = getattr(models, arch)(weights=None, **family.build(size))
        except (AssertionError, RuntimeError, ValueError) as e:
            if size == spec.input_size:
                raise
            raise ExportError(EXIT_USAGE, f"--input-size {size} does not work for {arch} ({first_line(e)}); "
                                          f"its native size is {spec.input_size}.")
        if state is not None:
            load_into(model, family.adapt_state(state, model, size), path, arch)
        model.eval()
        self.wrapper, self.names = family.wrap(model)
        self.wrapper.eval()
        del model
        self.x = torch.randn(batch, 3, size, size)
        try:
            self.y, first_call, out_shape = record_forward(self.wrapper, self.x)
        except RuntimeError as e:
            if size == spec.input_size:
                raise
            raise ExportError(EXIT_USAGE, f"--input-size {size} does not work for {arch}: its forward fails "
                                          f"({first_line(e)}); its native size is {spec.input_size}.")
        y = self.y
        if not (y.dim() == 4 and y.shape[0] == batch and y.shape[2] >= 1 and y.shape[3] >= 1):
            raise ExportError(EXIT_RUNTIME, f"{arch} backbone gives shape {list(y.shape)}, not a feature map "
                                            f"N x C x h x w; this is a bug in the exporter.")
        self.blocks = describe_blocks(self.wrapper, self.names, first_call, out_shape)
        self.layers = describe_layers(self.wrapper, self.names, first_call, out_shape)


def to_torchscript(wrapper, size):
    """Scripting keeps control flow and works for every supported arch; tracing is only a
    fallback, announced loudly because a traced module silently freezes data-dependent paths."""
    try:
        return torch.jit.script(wrapper), "scripted"
    except Exception as e:
        print(f"export_backbone: note: torch.jit.script failed ({type(e).__name__}: {first_line(e)}); "
              "falling back to torch.jit.trace", file=sys.stderr)
        with torch.no_grad():
            return torch.jit.trace(wrapper, torch.zeros(1, 3, size, size)), "traced"


def check_exported(module, a, arch):
    """The exported forward reproduces the eager one, and so does chaining its children the way
    tltrain cuts it between blocks (each block must be one link of that chain)."""
    units = list(chain_units(module, set(a.names)))
    paths = {p for p, _ in units}
    assert all(n in paths for n in a.names), f"blocks not in the chain: {[n for n in a.names if n not in paths]}"
    with torch.no_grad():
        y = module(a.x)
        z = a.x
        for _, unit in units:
            z = unit(z)
    diff, chain_diff = max_diff(a.y, y), (max_diff(y, z) if z.shape == y.shape else float("inf"))
    if y.shape != a.y.shape or diff > 1e-4 or chain_diff > 1e-5:
        raise ExportError(EXIT_RUNTIME, f"exported {arch} forward gives shape {list(y.shape)} (eager "
                                        f"{list(a.y.shape)}) with relative difference {diff:g} to eager PyTorch "
                                        f"and {chain_diff:g} to its chained children; this is a bug in the "
                                        "exporter or this torch/torchvision build.")


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


def warn_random_init(archs):
    what = f"the {archs[0]} backbone is" if len(archs) == 1 else f"the {len(archs)} backbones are"
    print("WARNING: ------------------------------------------------------------------\n"
          f"WARNING: --weights none: {what} RANDOMLY INITIALISED.\n"
          "WARNING: There is NO transfer learning with it: nothing was pre-trained, and\n"
          "WARNING: training on top of it starts from scratch. Use it for tests only;\n"
          "WARNING: pass --weights imagenet or --weights PATH.pth for real training.\n"
          "WARNING: ------------------------------------------------------------------",
          file=sys.stderr)


def up_to_date(arch, args):
    """--skip-up-to-date: DIR/ARCH.pt and its metadata are newer than this script (make-style)."""
    files = [os.path.join(args.out_dir, f"{arch}{ext}") for ext in (".pt", ".meta.json")]
    return all(os.path.isfile(f) and os.path.getmtime(f) > os.path.getmtime(__file__) for f in files)


def export(spec, args):
    arch, started = spec.arch, time.monotonic()
    size = args.input_size or spec.input_size
    out = args.out or os.path.join(args.out_dir, f"{arch}.pt")
    meta_out = args.meta_out if args.out else os.path.join(args.out_dir, f"{arch}.meta.json")
    # Resolve and read the weights before building the model, so that an offline download or a
    # bad path fails at once instead of after a slow random initialisation.
    weights, state, path = resolve_weights(spec, args.weights)
    a = Analysis(spec, size, state, path)
    module, how = to_torchscript(a.wrapper, size)
    module.eval()
    check_exported(module, a, arch)
    script_bn = count_script_batchnorms(module)
    assert script_bn == sum(b["batchnorms"] for b in a.blocks), (script_bn, a.blocks)

    meta = {
        "format": "tltrain-backbone",
        "format_version": 1,
        "arch": arch,
        "input_size": [size, size],
        "resize": spec.resize_for(size),
        "interpolation": spec.interpolation,
        "mean": spec.mean,
        "std": spec.std,
        "color_order": "RGB",
        "pixel_range": 1.0,
        "preset": spec.preset,
        "feature_channels": int(a.y.shape[1]),
        "feature_size": [int(a.y.shape[2]), int(a.y.shape[3])],
        "blocks": a.blocks,
        "layers": a.layers,
        "weights": weights,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exporter": "scripts/export_backbone.py",
    }
    save_atomically(module, out, meta)
    if meta_out:
        with open(meta_out, "w") as f:
            json.dump(meta, f, indent=2)

    n_params = sum(b["params"] for b in a.blocks)
    print(f"exported {arch} ({how}) -> {out} ({os.path.getsize(out) / 1e6:.1f} MB, "
          f"{time.monotonic() - started:.1f} s)\n"
          f"  blocks: {len(a.blocks)} ({a.blocks[0]['name']} .. {a.blocks[-1]['name']}), layers: {len(a.layers)}, "
          f"params: {n_params:,}, batchnorms: {script_bn}\n"
          f"  features: {meta['feature_channels']} x {meta['feature_size'][0]} x {meta['feature_size'][1]} "
          f"at input {size} x {size} (resize {meta['resize']}, {spec.interpolation}; {spec.preset})\n"
          f"  weights: {weights['source']}"
          + (f" {weights['file']} sha256 {weights['sha256']}" if weights["file"] else " (random init)"), flush=True)


LIST_COLUMNS = ("arch", "input", "resize", "output", "blocks", "layers", "parameters", "preprocessing from")


def list_row(spec):
    a = Analysis(spec, spec.input_size, batch=1)
    c, h, w = a.y.shape[1:]
    return (spec.arch, str(spec.input_size), str(spec.resize), f"{c}x{h}x{w}", str(len(a.blocks)),
            str(len(a.layers)), f"{sum(b['params'] for b in a.blocks):,}", spec.preset.split(".")[1])


def list_archs(specs, fmt):
    """The --list table, a row as soon as each architecture is measured."""
    widths = (18, 5, 6, 12, 6, 6, 13, 25)

    def line(cells):
        if fmt == "markdown":
            return "| " + " | ".join(cells) + " |"
        return "  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(line(LIST_COLUMNS) + ("\n|" + "---|" * len(LIST_COLUMNS) if fmt == "markdown" else ""))
    for spec in specs:
        print(line(list_row(spec)), flush=True)
        gc.collect()


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Export torchvision feature extractors as tltrain backbones (docs/backbone-format.md).")
    p.add_argument("--arch", metavar="ARCH[,ARCH...]|all",
                   help="a torchvision architecture (--list prints all of them), several with --out-dir, or all")
    p.add_argument("--weights", metavar="imagenet|none|PATH.pth",
                   help="torchvision ImageNet weights, random init, or a state dict file")
    outs = p.add_mutually_exclusive_group()
    outs.add_argument("--out", metavar="FILE.pt", help="the backbone file (one --arch)")
    outs.add_argument("--out-dir", metavar="DIR", help="write DIR/ARCH.pt and DIR/ARCH.meta.json for each --arch")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="default square input size recorded in the metadata (default: the architecture's native size)")
    p.add_argument("--meta-out", metavar="FILE.json",
                   help="with --out: also write the embedded metadata to this file "
                        "(the tests compare it with what C++ reads)")
    p.add_argument("--exclude", metavar="ARCH[,ARCH...]", help="leave these out of --arch (e.g. all)")
    p.add_argument("--skip-up-to-date", action="store_true",
                   help="with --out-dir: skip architectures whose files there are newer than this script")
    p.add_argument("--list", nargs="?", const="text", choices=("text", "markdown"),
                   help="print every architecture's input size, resize, blocks, layers and parameters, and exit")
    args = p.parse_args(argv)

    def arch_list(opt, value):
        names = [a.strip() for a in value.split(",") if a.strip()]
        unknown = [a for a in names if a not in ARCHS]
        if unknown:
            p.error(f"{opt}: unknown architecture {', '.join(map(repr, unknown))}; choose from "
                    + ", ".join(ARCHS) + (" (or all)" if opt == "--arch" else ""))
        return names

    if args.arch in (None, "all"):
        args.archs = list(ARCHS) if args.arch == "all" or args.list else []
    else:
        args.archs = arch_list("--arch", args.arch)
    if args.exclude:
        excluded = arch_list("--exclude", args.exclude)
        args.archs = [a for a in args.archs if a not in excluded]
    # Five stride-2 stages: smaller inputs leave no feature map.
    if args.input_size is not None and args.input_size < 32:
        p.error(f"--input-size must be at least 32 (got {args.input_size})")
    if args.list:
        for opt in ("weights", "out", "out_dir", "input_size", "meta_out"):
            if getattr(args, opt) is not None:
                print(f"export_backbone: warning: --{opt.replace('_', '-')} is ignored with --list", file=sys.stderr)
        return args

    missing = [opt for opt, v in (("--arch", args.arch), ("--weights", args.weights),
                                  ("--out or --out-dir", args.out or args.out_dir)) if not v]
    if missing:
        p.error("the following arguments are required: " + ", ".join(missing))
    if not args.archs:
        p.error("--exclude leaves no architecture to export")
    if len(args.archs) > 1 and args.out:
        p.error(f"--out takes one architecture (got {len(args.archs)}); use --out-dir DIR for several")
    if len(args.archs) > 1 and args.weights not in ("imagenet", "none"):
        p.error(f"--weights {args.weights} fits one architecture; export several only with --weights imagenet or none")
    if args.skip_up_to_date and not args.out_dir:
        p.error("--skip-up-to-date goes with --out-dir")
    if args.meta_out and not args.out:
        p.error("--meta-out goes with --out (--out-dir writes DIR/ARCH.meta.json itself)")
    if args.out and os.path.isdir(args.out):
        p.error(f"--out '{args.out}' is a directory; give a file name such as {args.archs[0]}.pt, or use --out-dir")
    if args.out_dir and os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        p.error(f"--out-dir '{args.out_dir}' is a file, not a directory")
    if args.input_size is not None:
        for arch in args.archs:
            rule = ARCHS[arch].family.size_rule
            problem = rule and rule(arch, args.input_size)
            if problem:
                p.error(f"--input-size {args.input_size} does not work for {arch}: it {problem}")
    return args


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="torch.meshgrid")  # torch's own call inside maxvit/swin
    if args.list:
        try:
            list_archs([ARCHS[a] for a in args.archs], args.list)
        except ExportError as e:
            print(f"export_backbone: error: {e}", file=sys.stderr)
            return e.code
        except KeyboardInterrupt:
            return 130
        return 0
    if args.skip_up_to_date:
        args.archs = [a for a in args.archs if not up_to_date(a, args)]
    if args.weights == "none" and args.archs:
        warn_random_init(args.archs)
    code = 0
    for arch in args.archs:
        try:
            export(ARCHS[arch], args)
        except ExportError as e:
            print(f"export_backbone: error: {e}", file=sys.stderr)
            code = code or e.code
        except KeyboardInterrupt:
            return 130
        gc.collect()  # the giants hold gigabytes
    return code


if __name__ == "__main__":
    sys.exit(main())
