"""Small seeded datasets for the service tests, written as real files."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

TINTS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def image_bytes(tint: tuple[int, int, int], rng: np.random.Generator, size: int = 16) -> bytes:
    noise = rng.integers(-50, 50, size=(size, size, 3))
    arr = np.clip(np.array(tint)[None, None, :] + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def image_members(per_class: int = 8, seed: int = 0) -> dict[str, bytes]:
    """``{"red/000.png": png bytes, ...}`` for three tinted classes."""
    rng = np.random.default_rng(seed)
    return {
        f"{name}/{i:03d}.png": image_bytes(tint, rng)
        for name, tint in TINTS.items()
        for i in range(per_class)
    }


def write_image_zip(path: Path, per_class: int = 8, seed: int = 0, top: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in image_members(per_class, seed).items():
            zf.writestr(f"{top}{name}", data)
    return path


def write_image_tar(path: Path, per_class: int = 8, seed: int = 0) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in image_members(per_class, seed).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_text_jsonl(path: Path, n: int = 12) -> Path:
    rows = [
        {"id": f"t{i}", "text": f"sample number {i} é", "label": "pos" if i % 2 else "neg"}
        for i in range(n)
    ]
    path.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows))
    return path


def write_npz(path: Path, n: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 255, size=(n, 12, 12, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    np.savez(path, x=x, y=y)
    return path
