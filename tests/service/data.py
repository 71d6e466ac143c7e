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


WORDS = [
    "red",
    "blue",
    "green",
    "apple",
    "river",
    "stone",
    "cloud",
    "light",
    "dark",
    "quick",
    "slow",
    "bright",
]


def write_instructions(path: Path, n: int = 10, long_input: int = 2, seed: int = 0) -> Path:
    """Alpaca rows; the last ``long_input`` have a long input that a short max_length cuts."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        words = [str(w) for w in rng.choice(WORDS, size=4)]
        long = i >= n - long_input
        extra = " ".join(str(w) for w in rng.choice(WORDS, size=60)) if long else ""
        row = {
            "id": f"q{i}",
            "instruction": " ".join(words),
            "input": extra,
            "output": " ".join(reversed(words)),
        }
        lines.append(json.dumps(row).encode() + b"\n")
    path.write_bytes(b"".join(lines))
    return path


def write_tiny_lm(directory: Path, seed: int = 0) -> Path:
    """An untrained, seeded tiny Llama with a word-level tokenizer, as a Hugging Face directory."""
    from tests.scoring.lm_helpers import build_word_tokenizer, tiny_llama

    tokenizer = build_word_tokenizer(WORDS)
    model = tiny_llama(tokenizer, seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def zip_directory(directory: Path, out: Path, top: str = "model") -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for file in sorted(directory.rglob("*")):
            if file.is_file():
                zf.write(file, f"{top}/{file.relative_to(directory)}")
    return out
