"""What every format module implements: the ``Reader`` ABC, the image-reader base, and the
``Instruction`` payload of the instruction-tuning formats."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from dlcprune.core.formats.limits import ReadLimits

__all__ = ["ImageReader", "Instruction", "Reader", "natural_key"]

_INT_RE = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class Instruction:
    """One instruction-tuning sample; ``input`` is ``""`` when the record has none."""

    instruction: str
    input: str
    response: str


def natural_key(name: str) -> tuple[int, int, str]:
    """Sort key putting integer-looking names first, by value ("2" < "10"), then others by str."""
    if _INT_RE.fullmatch(name):
        return (0, int(name), name)
    return (1, 0, name)


class Reader(ABC):
    """An indexed dataset: ids and labels in memory, payloads streamed on demand.

    Attributes:
        path: the path given to ``open_dataset`` (str).
        format: one of ``FORMATS`` (set by ``registry.register``).
        kind: ``"image"``, ``"vector"``, ``"text"`` or ``"instruction"``.
        ids: unique sample ids (``list[str]``) in index order.
        labels: the label name of each sample (``list[str]``), or ``None`` when unlabelled.
        limits: the ``ReadLimits`` in force.
    """

    format: str = ""
    kind: str = ""

    def __init__(self, path: str, limits: ReadLimits) -> None:
        self.path = path
        self.limits = limits
        self.ids: list[str] = []
        self.labels: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} {self.path!r} n={len(self)}>"

    @property
    def classes(self) -> dict[str, int]:
        """Label name -> sample count, keys in natural order ("2" < "10"); ``{}`` if unlabelled."""
        if self.labels is None:
            return {}
        counts = Counter(self.labels)
        return {name: counts[name] for name in sorted(counts, key=natural_key)}

    def summary(self) -> dict[str, Any]:
        """JSON-able ``{"format", "kind", "num_samples", "classes"}``."""
        return {
            "format": self.format,
            "kind": self.kind,
            "num_samples": len(self),
            "classes": self.classes,
        }

    @abstractmethod
    def iter_payloads(self) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, payload)`` for every sample, in index order, in one sequential pass."""

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        """Payloads of samples ``start..stop-1`` (a shard), in index order. Formats with random
        access read only those; the others stream past the rest without decoding it."""
        for i, payload in self.iter_payloads():
            if i >= stop:
                break
            if i >= start:
                yield i, payload

    def verify(self) -> None:
        """Deep check of the data not already checked by the index; raises the first error."""
        return None

    @abstractmethod
    def source(self, i: int) -> str:
        """Where sample ``i`` came from (member name, relative path, ``line N``, ``row N``)."""

    def close(self) -> None:
        """Release open files; the dataset cannot stream payloads afterwards."""
        return None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ImageReader(Reader):
    """Base of the image formats: payloads are fully loaded RGB ``PIL.Image.Image`` objects."""

    kind = "image"

    def iter_payloads(self) -> Iterator[tuple[int, Any]]:
        yield from self._iter_images(convert=True)

    def iter_range(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        yield from self._iter_images(convert=True, rng=range(start, min(stop, len(self.ids))))

    def verify(self) -> None:
        """Decode every image fully (pixel limit included); raise for the first bad one."""
        for _ in self._iter_images(convert=False):
            pass

    @abstractmethod
    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        """Decode images in index order (those in ``rng`` only, when given); yield ``None``
        payloads when ``convert`` is False."""

    @abstractmethod
    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        """The stored bytes of each image (for exports), with the same size limits as decoding.

        ``keep``: the sample indices wanted (all when None). Yields ``(index, bytes)`` in index
        order, except for tar archives, which yield in the archive's own order (one pass).
        """
