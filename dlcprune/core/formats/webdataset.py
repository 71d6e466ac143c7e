"""``webdataset``: WebDataset tar shards (``key.jpg`` with ``key.cls`` or ``key.json``), streamed
with the standard library's tarfile under the archive safety rules of ``limits``.

A sample is the run of consecutive members sharing a key (the member name up to the first dot of
its base name, as WebDataset groups them). Its image is the first member with an image extension
(``jpg``, ``jpeg``, ``png``, ``webp``, ``bmp``; ``columns={"image": "png"}`` picks one); its label
is the text of ``key.cls`` (an integer), else the ``label`` field of ``key.json``
(``columns={"label": "y"}`` names another field, or another extension such as ``cls2``). Shards are
given as a list, a brace pattern (``shards-{000000..000009}.tar``) or a directory of ``.tar``
files; a single ``.tar`` is detected as WebDataset when its first members are keyed this way.

Member names go through the same checks as the tar format (no ``..``, absolute names, links,
devices or nested archives; member, byte and sample limits). A shard truncated or corrupt half-way
is a ``CorruptArchiveError`` naming the shard and the last member read.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from PIL import Image

from dlcprune.core.errors import (
    CorruptArchiveError,
    DatasetError,
    EmptyDatasetError,
    InvalidRecordError,
    MissingFieldError,
)
from dlcprune.core.formats.base import ImageReader
from dlcprune.core.formats.columns import LabelColumn
from dlcprune.core.formats.images import IMAGE_EXTENSIONS, decode_image
from dlcprune.core.formats.limits import (
    ArchiveBudget,
    ReadLimits,
    archive_errors,
    check_archive_file,
    check_samples,
    is_ignored,
    read_capped,
    split_relative,
    tar_member_kind,
)
from dlcprune.core.formats.registry import Probe, register
from dlcprune.core.formats.tararchive import next_member, open_tar, tar_pass

__all__ = ["WebDatasetReader", "looks_like_shard", "split_key"]

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)
_LABEL_MEMBER_BYTES = 1 << 20
_PROBE_MEMBERS = 32


def split_key(name: str) -> tuple[str, str]:
    """``("dir/000123", "seg.png")`` from ``dir/000123.seg.png``: WebDataset's key and
    extension (the extension lower-cased)."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    key = f"{head}/{stem}" if head else stem
    return key, ext.lower() if dot else ""


def looks_like_shard(path: str | BinaryIO, limits: ReadLimits) -> bool:
    """True when the first members of the tar pair an image with a ``.cls``/``.json``.
    ``path`` may be a seekable file (an object in a store, read by ranges); it is left open."""
    try:
        if isinstance(path, str):
            tf, _ = open_tar(path)
        else:
            tf, _ = open_tar("", fileobj=path)
        try:
            exts: dict[str, set[str]] = {}
            for _ in range(_PROBE_MEMBERS):
                info = next_member(tf)
                if info is None:
                    break
                if info.isreg():
                    key, ext = split_key(info.name)
                    exts.setdefault(key, set()).add(ext)
        finally:
            tf.close()
    except Exception:  # not readable as a tar: the tar format reports it
        return False
    return any(e & set(_IMAGE_EXTS) and e & {"cls", "json"} for e in exts.values())


def _is_shard_dir(path: str) -> bool:
    with os.scandir(path) as it:
        names = [e.name for e in it if not e.name.startswith(".")]
    return bool(names) and all(n.lower().endswith(SHARD_SUFFIXES) for n in names)


def _shard_paths(paths: Sequence[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            with os.scandir(p) as it:
                found = sorted(
                    e.path
                    for e in it
                    if e.is_file()
                    and not e.name.startswith(".")
                    and e.name.lower().endswith(SHARD_SUFFIXES)
                )
            if not found:
                raise EmptyDatasetError("no .tar shards in the folder", path=p)
            out.extend(found)
        elif not os.path.isfile(p):
            raise DatasetError("shard does not exist", path=p)
        else:
            out.append(p)
    return out


@register(
    "webdataset",
    probe=Probe(SHARD_SUFFIXES, looks_like_shard),
    directory=_is_shard_dir,
    roles=("image", "label"),
    shards=True,
)
class WebDatasetReader(ImageReader):
    """WebDataset shards (see the module docstring). ``path`` is the first shard (or the
    pattern or folder given); ``shards`` all of them in order. Ids are the sample keys, in
    shard then member order; ``source(i)`` is ``shard[image member]``."""

    def __init__(
        self,
        path: Sequence[str] | str,
        limits: ReadLimits,
        columns: Mapping[str, str] | None = None,
        opener: Callable[[str], BinaryIO] | None = None,
    ) -> None:
        given = [path] if isinstance(path, str) else list(path)
        super().__init__(given[0], limits)
        self.columns = dict(columns or {})
        # ``opener``: shards that are not local files (objects in a store, named by their URIs),
        # each opened as a seekable file and streamed from it: nothing is copied first.
        self._opener = opener
        self.shards = given if opener is not None else _shard_paths(given)
        self._label = LabelColumn(self.columns.get("label", "cls"), path=self.path)
        self._members: list[str] = []
        self._shard_of: list[int] = []
        self._counts: list[int] = []
        self.labels = []
        ids: list[str] = []
        seen: set[str] = set()
        for s, shard in enumerate(self.shards):
            before = len(ids)
            for key, image, label in self._index_shard(shard):
                if key in seen:
                    raise InvalidRecordError(
                        f"duplicate sample key {key!r}", path=shard, member=image
                    )
                seen.add(key)
                ids.append(key)
                self.labels.append(label)
                self._members.append(image)
                self._shard_of.append(s)
                check_samples(len(ids), limits, self.path)
            self._counts.append(len(ids) - before)
        if not ids:
            raise EmptyDatasetError("shards hold no samples", path=self.path)
        self.ids = ids

    # -- index -----------------------------------------------------------------------------

    def _open(self, shard: str) -> contextlib.AbstractContextManager[tuple[tarfile.TarFile, bool]]:
        """The shard for one pass (``tar_pass``: local, or streamed through ``opener``)."""
        return tar_pass(shard, self._opener)

    def _index_shard(self, shard: str) -> Iterator[tuple[str, str, str]]:
        budget = ArchiveBudget(self.limits, shard)
        group: dict[str, Any] | None = None
        done: set[str] = set()
        last: str | None = None
        with self._open(shard) as (tf, plain):
            while True:
                with archive_errors(shard, last):
                    info = next_member(tf)
                if info is None:
                    break
                budget.add_member()
                name = info.name
                parts = split_relative(name, path=shard, what="member name")
                if tar_member_kind(info, path=shard) == "dir":
                    continue
                check_archive_file(name, parts, path=shard, limits=self.limits, size=info.size)
                budget.take(info.size, name)
                last = name
                if not parts or is_ignored(parts):
                    continue
                key, ext = split_key("/".join(parts))
                if group is not None and group["key"] != key:
                    yield self._finish(shard, group)
                    done.add(group["key"])
                    group = None
                if group is None:
                    if key in done:
                        raise InvalidRecordError(
                            f"members of sample {key!r} are not adjacent (or repeated)",
                            path=shard,
                            member=name,
                        )
                    group = {"key": key, "members": {}, "texts": {}}
                if ext in group["members"]:
                    raise InvalidRecordError("duplicate member", path=shard, member=name)
                group["members"][ext] = name
                if not ext.endswith(_IMAGE_EXTS):
                    with archive_errors(shard, name):
                        f = tf.extractfile(info)
                        assert f is not None
                        with f:
                            small = self.limits
                            if info.size > _LABEL_MEMBER_BYTES:
                                group["texts"][ext] = None
                                continue
                            group["texts"][ext] = read_capped(
                                f, limits=small, budget=budget, member=name
                            )
            if group is not None:
                yield self._finish(shard, group)
            if plain:
                with archive_errors(shard, last):
                    self._check_end(tf, shard, last)

    def _check_end(self, tf: tarfile.TarFile, shard: str, last: str | None) -> None:
        tf.fileobj.seek(tf.offset)  # type: ignore[union-attr]
        block = tf.fileobj.read(tarfile.BLOCKSIZE)  # type: ignore[union-attr]
        if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
            raise CorruptArchiveError(
                "shard is truncated or has a corrupt member header after this member",
                path=shard,
                member=last,
            )

    def _finish(self, shard: str, group: dict[str, Any]) -> tuple[str, str, str]:
        key, members, texts = group["key"], group["members"], group["texts"]
        want = self.columns.get("image")
        exts = [want] if want else list(_IMAGE_EXTS)
        image = next((members[e] for e in exts if e in members), None)
        if image is None:
            raise MissingFieldError(
                f"sample {key!r} has no image ({', '.join('.' + e for e in exts)})",
                path=shard,
                member=next(iter(members.values())),
            )
        return key, image, self._label_of(shard, key, members, texts)

    def _label_of(
        self, shard: str, key: str, members: dict[str, str], texts: dict[str, bytes | None]
    ) -> str:
        field = self.columns.get("label")
        ext = field if field and field in texts else ("cls" if not field else None)
        if ext is not None and texts.get(ext) is not None:
            raw_text = texts[ext].decode("utf-8", "replace").strip()  # type: ignore[union-attr]
            value: Any = int(raw_text) if raw_text.lstrip("-").isdigit() else raw_text
            return self._label.value(value, line=None, member=members[ext], column=f".{ext}")
        if "json" in texts and texts["json"] is not None:
            name = field or "label"
            try:
                obj = json.loads(texts["json"])
            except ValueError as exc:
                raise InvalidRecordError(
                    f"invalid JSON: {exc}", path=shard, member=members["json"]
                ) from exc
            if not isinstance(obj, dict) or name not in obj:
                raise MissingFieldError(
                    f"no label: {members['json']} has no field {name!r}",
                    path=shard,
                    member=members["json"],
                )
            return self._label.value(obj[name], line=None, member=members["json"], column=name)
        wanted = f".{field}" if field else ".cls or .json"
        raise MissingFieldError(
            f"sample {key!r} has no label ({wanted})",
            path=shard,
            member=members[next(iter(members))],
        )

    # -- reading ---------------------------------------------------------------------------

    def source(self, i: int) -> str:
        return f"{self.shards[self._shard_of[i]]}[{self._members[i]}]"

    def _iter_bytes(self, rng: range, keep: Collection[int] | None = None):
        first = 0
        for s, shard in enumerate(self.shards):
            lo, hi = first, first + self._counts[s]
            first = hi
            if hi <= rng.start or lo >= rng.stop:
                continue
            wanted = {
                self._members[i]: i
                for i in range(max(lo, rng.start), min(hi, rng.stop))
                if keep is None or i in keep
            }
            if not wanted:
                continue
            budget = ArchiveBudget(self.limits, shard)
            last: str | None = None
            with self._open(shard) as (tf, _):
                while wanted:
                    with archive_errors(shard, last):
                        info = next_member(tf)
                    if info is None:
                        break
                    last = info.name
                    index = wanted.pop(info.name, None)
                    if index is None or not info.isreg():
                        continue
                    with archive_errors(shard, info.name):
                        f = tf.extractfile(info)
                        assert f is not None
                        with f:
                            data = read_capped(
                                f, limits=self.limits, budget=budget, member=info.name
                            )
                    yield index, shard, info.name, data
            if wanted:
                raise CorruptArchiveError(
                    "member listed at open is missing (was the shard changed?)",
                    path=shard,
                    member=min(wanted, key=wanted.__getitem__),
                )

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        chosen = set(keep) if keep is not None else None
        for i, _, _, data in self._iter_bytes(range(len(self.ids)), chosen):
            yield i, data

    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        rng = rng if rng is not None else range(len(self.ids))
        for i, shard, member, data in self._iter_bytes(rng):
            im = decode_image(
                io.BytesIO(data), limits=self.limits, path=shard, member=member, convert=convert
            )
            yield i, im
