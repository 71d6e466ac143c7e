"""The quality benchmark's datasets, built offline and seeded: digits (clean or with flipped
labels) and a text set of the standard library's docstrings; each with a stratified held-out test
split that is never used for scoring or selection."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Data:
    name: str
    kind: str  # "image" or "text"
    train: Path
    test: Path
    labels: np.ndarray  # training labels as scored (noisy ones included)
    clean: np.ndarray  # true training labels
    test_labels: np.ndarray
    notes: str = ""


def _stratified_split(y: np.ndarray, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cut = round(len(idx) * test_share)
        test.extend(idx[:cut].tolist())
        train.extend(idx[cut:].tolist())
    return np.sort(train), np.sort(test)


def digits(root: Path, noise: float, seed: int = 0) -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.repeat((d.images * 255 / 16).astype(np.uint8)[..., None], 3, axis=3)
    tr, te = _stratified_split(d.target, 0.3, seed)
    y = d.target[tr].copy()
    clean = y.copy()
    if noise:
        rng = np.random.default_rng(seed + 1)
        flip = rng.random(len(y)) < noise
        y[flip] = (y[flip] + rng.integers(1, 10, int(flip.sum()))) % 10
    name = "digits" if not noise else f"digits, {noise:.0%} of training labels flipped"
    tag = "digits" if not noise else "noisy"
    train, test = root / f"{tag}-train.npz", root / f"{tag}-test.npz"
    np.savez(train, x=x[tr], y=y)
    np.savez(test, x=x[te], y=d.target[te])
    notes = f"scikit-learn's digits: {len(tr)} training and {len(te)} test images"
    return Data(name, "image", train, test, y, clean, d.target[te], notes=notes)


def stdlib_docstrings(per_class: int = 120, seed: int = 0) -> tuple[list[str], list[str]]:
    """Real English text on this machine: docstrings of the Python standard library, labelled by
    the package they document (a 10-class text classification task)."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    packages = [
        "asyncio",
        "email",
        "json",
        "logging",
        "multiprocessing",
        "unittest",
        "xml",
        "http",
        "concurrent",
        "importlib",
    ]
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for pkg in packages:
        found: list[str] = []
        for path in sorted((stdlib / pkg).rglob("*.py")):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 40:
                        found.append(" ".join(doc.split())[:400])
        found = sorted(set(found))
        for i in rng.permutation(len(found))[:per_class]:
            texts.append(found[i])
            labels.append(pkg)
    return texts, labels


def text(root: Path, seed: int = 0) -> Data:
    texts, labels = stdlib_docstrings(seed=seed)
    classes = sorted(set(labels))
    y_all = np.array([classes.index(lab) for lab in labels])
    tr, te = _stratified_split(y_all, 0.3, seed)

    def write(path: Path, idx: np.ndarray) -> Path:
        with open(path, "w", encoding="utf-8") as fh:
            for i in idx:
                fh.write(json.dumps({"text": texts[i], "label": labels[i]}) + "\n")
        return path

    return Data(
        "Python standard library docstrings (10 packages)",
        "text",
        write(root / "text-train.jsonl", tr),
        write(root / "text-test.jsonl", te),
        y_all[tr],
        y_all[tr],
        y_all[te],
        notes=f"docstrings of 10 standard-library packages: {len(tr)} training and "
        f"{len(te)} test texts",
    )
