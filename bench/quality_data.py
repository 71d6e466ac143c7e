"""The quality benchmark's datasets, built offline and seeded from what a Debian machine has:
scikit-learn's digits, letters rendered from Debian's DejaVu fonts, icons of Debian's Adwaita
icon theme, and a text set of the standard library's docstrings; each with a stratified held-out
test split that is never used for scoring or selection. Any of them can have a share of its
training labels flipped (the label-issue study)."""

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


def _flip(y: np.ndarray, noise: float, classes: int, seed: int) -> np.ndarray:
    """A copy of ``y`` with about ``noise`` of its labels moved to another class (seeded)."""
    y = y.copy()
    if noise:
        rng = np.random.default_rng(seed + 1)
        flip = rng.random(len(y)) < noise
        y[flip] = (y[flip] + rng.integers(1, classes, int(flip.sum()))) % classes
    return y


def _image_set(
    root: Path,
    tag: str,
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    noise: float,
    seed: int,
    notes: str,
) -> Data:
    tr, te = _stratified_split(y, 0.3, seed)
    classes = int(y.max()) + 1
    labels = _flip(y[tr], noise, classes, seed)
    if noise:
        name += f", {noise:.0%} of training labels flipped"
    train, test = root / f"{tag}-train.npz", root / f"{tag}-test.npz"
    np.savez(train, x=x[tr], y=labels)
    np.savez(test, x=x[te], y=y[te])
    notes += f": {len(tr)} training and {len(te)} test images"
    return Data(name, "image", train, test, labels, y[tr].copy(), y[te], notes=notes)


FONTS = Path("/usr/share/fonts/truetype/dejavu")
GLYPHS = "AEGKMRSWXZ"


def glyphs(root: Path, noise: float = 0.0, seed: int = 0, variants: int = 8) -> Data:
    """Ten capital letters rendered from every DejaVu font (22 faces: sans, serif, mono,
    condensed, bold, oblique...), ``variants`` seeded renderings per face and letter (size 24 to
    36 px, rotation within 12 degrees, shifted within 4 px), black on white at 48 px."""
    from PIL import Image, ImageDraw, ImageFont

    fonts = sorted(FONTS.glob("*.ttf"))
    if not fonts:
        raise FileNotFoundError(f"no fonts under {FONTS} (Debian's fonts-dejavu-core)")
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for font_path in fonts:
        for c, ch in enumerate(GLYPHS):
            for _ in range(variants):
                font = ImageFont.truetype(str(font_path), int(rng.integers(24, 37)))
                img = Image.new("L", (64, 64), 255)
                ImageDraw.Draw(img).text((32, 32), ch, font=font, fill=0, anchor="mm")
                img = img.rotate(float(rng.uniform(-12, 12)), fillcolor=255)
                dx, dy = rng.integers(-4, 5, 2)
                img = img.crop((8 - dx, 8 - dy, 56 - dx, 56 - dy))
                xs.append(np.asarray(img))
                ys.append(c)
    x = np.repeat(np.stack(xs)[..., None], 3, axis=3)
    notes = f"letters {GLYPHS} in {len(fonts)} DejaVu faces, {variants} renderings each"
    return _image_set(root, "glyphs", "glyphs", x, np.array(ys), noise, seed, notes)


ICONS = Path("/usr/share/icons")
ICON_CONTEXTS = [
    "actions",
    "categories",
    "devices",
    "emblems",
    "emotes",
    "mimetypes",
    "places",
    "status",
    "ui",
]


def icons(root: Path, noise: float = 0.0, seed: int = 0, per_class: int = 180) -> Data:
    """Icons of Debian's Adwaita and hicolor themes (PNG, every size the theme ships), labelled by
    their context (actions, devices, places...: 9 classes), at most ``per_class`` files per class
    (seeded), composited on grey and resized to 48 px. Every size of one icon goes to the same
    split, so the test set holds icons never seen in training."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    xs, ys, names = [], [], []
    for c, ctx in enumerate(ICON_CONTEXTS):
        files = sorted(
            p for theme in ("Adwaita", "hicolor") for p in (ICONS / theme).glob(f"*/{ctx}/*.png")
        )
        files = [files[i] for i in np.sort(rng.permutation(len(files))[:per_class])]
        for f in files:
            with Image.open(f) as im:
                rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (160, 160, 160, 255))
            img = Image.alpha_composite(bg, rgba).convert("RGB").resize((48, 48), Image.LANCZOS)
            xs.append(np.asarray(img))
            ys.append(c)
            names.append(f"{ctx}/{f.name.split('.')[0]}")
    if not xs:
        raise FileNotFoundError(f"no icons under {ICONS} (Debian's adwaita-icon-theme)")
    x, y = np.stack(xs), np.array(ys)
    # Split by icon name (per class), not by file: sizes of one icon are near-duplicates.
    uniq = sorted(set(names))
    name_class = np.array([ICON_CONTEXTS.index(u.split("/")[0]) for u in uniq])
    tr_names, _ = _stratified_split(name_class, 0.3, seed)
    train_set = {uniq[i] for i in tr_names}
    is_train = np.array([n in train_set for n in names])
    tr, te = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    labels = _flip(y[tr], noise, len(ICON_CONTEXTS), seed)
    name = "icons" + (f", {noise:.0%} of training labels flipped" if noise else "")
    train, test = root / "icons-train.npz", root / "icons-test.npz"
    np.savez(train, x=x[tr], y=labels)
    np.savez(test, x=x[te], y=y[te])
    notes = (
        f"Adwaita/hicolor icons in {len(ICON_CONTEXTS)} contexts, {len(uniq)} icons: "
        f"{len(tr)} training and {len(te)} test images"
    )
    return Data(name, "image", train, test, labels, y[tr].copy(), y[te], notes=notes)


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


def pack(data: Data, path: Path) -> None:
    """One compressed file holding a built image set (for a machine that lacks the fonts or
    icon themes it was rendered from)."""
    tr, te = np.load(data.train), np.load(data.test)
    np.savez_compressed(
        path,
        x=tr["x"],
        y=data.labels,
        clean=data.clean,
        test_x=te["x"],
        test_y=data.test_labels,
        meta=np.array(json.dumps({"name": data.name, "kind": data.kind, "notes": data.notes})),
    )


def unpack(path: Path, root: Path) -> Data:
    """The :class:`Data` that :func:`pack` stored, its splits written under ``root``."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        train, test = root / f"{path.stem}-train.npz", root / f"{path.stem}-test.npz"
        np.savez(train, x=z["x"], y=z["y"])
        np.savez(test, x=z["test_x"], y=z["test_y"])
        return Data(
            meta["name"], meta["kind"], train, test, z["y"], z["clean"], z["test_y"], meta["notes"]
        )
