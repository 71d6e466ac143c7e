"""Dataset formats: turn a path into an indexed ``Reader`` whose payloads can be streamed.

``open_dataset(path)`` detects the format, builds a cheap index (ids, labels and, for line-based
files, byte spans) and returns a ``Reader``. Payloads are produced later by one sequential pass of
``Reader.iter_payloads()``, so a dataset never has to fit in memory.

Formats (``Reader.format``) and the kind of payload they yield (``Reader.kind``), one module each
behind the registry (``registry.register``):

- ``folder``, ``zip``, ``tar``: class subfolders holding images -> ``image`` (``PIL.Image`` RGB).
- ``manifest``: a CSV or JSONL (or ``.jsonl.gz``) file listing image paths and labels ->
  ``image``; ``manifest_zip``: a zip holding such a manifest and its images (the shape of the
  service's manifest export).
- ``npz``: an array ``x`` (plus optional ``y`` and ``id``/``ids``) -> ``image`` for ``x`` of
  3 or 4 dimensions, ``vector`` (float32 ``(D,)``) for 2 dimensions.
- ``text``: JSONL with ``text`` and ``label`` -> ``text`` (``str``).
- ``alpaca``, ``dolly``, ``sharegpt``, ``chat`` (OpenAI ``messages``): JSONL instruction data ->
  ``instruction`` (``Instruction``). Every JSON-lines format also reads ``.jsonl.gz``.
- ``parquet`` (one file), ``hf_parquet`` (Parquet shards as the Hugging Face Hub stores them),
  ``hf_dataset`` (a ``save_to_disk`` directory): tables of images (bytes, ``Image`` structs or
  paths), text or instructions, told from their columns -> ``image``, ``text`` or
  ``instruction``; ``ClassLabel`` features give the label names.
- ``webdataset``: tar shards of ``key.jpg`` + ``key.cls``/``key.json``, given as a list, a
  brace pattern or a folder -> ``image``.

``open_dataset(path, columns={"image": "img", "label": "y"})`` maps roles to other column or
field names for the formats with named fields (``columns.py``).

Every problem caused by the data is raised as a ``DatasetError`` subclass from
``dlcprune.core.errors`` naming the file and, where it applies, the line (1-based) or the archive
member / relative image path. The safety rules (limits, member names, capped reads, nested
archives) live in ``limits``, image decoding in ``images``; see those modules.

Layout: ``base`` (the ``Reader`` ABC, ``ImageReader``, ``Instruction``), ``limits`` and ``images``
(the safety layer), ``layout`` (class folders), ``jsonl`` (line-based machinery), ``columns``
(column mappings, label columns), ``table`` (Arrow tables), ``registry`` (detection and
``open_dataset``), then one module per format. Adding a format is one new module
and its import below, whose order is the order of ``FORMATS``.
"""

from __future__ import annotations

from dlcprune.core.formats.base import ImageReader, Instruction, Reader
from dlcprune.core.formats.images import IMAGE_EXTENSIONS
from dlcprune.core.formats.jsonl import JsonlReader
from dlcprune.core.formats.limits import ReadLimits
from dlcprune.core.formats.registry import JsonSniff, detect_format, open_dataset, register

# Each import registers its format; FORMATS follows this order.
from dlcprune.core.formats.folder import FolderReader  # isort: skip
from dlcprune.core.formats.ziparchive import ZipReader  # isort: skip
from dlcprune.core.formats.tararchive import TarReader  # isort: skip
from dlcprune.core.formats.manifest import ManifestReader  # isort: skip
from dlcprune.core.formats.npz import NpzReader  # isort: skip
from dlcprune.core.formats.text import TextReader  # isort: skip
from dlcprune.core.formats.instructions import (  # isort: skip
    AlpacaReader,
    ChatReader,
    DollyReader,
    ShareGptReader,
)
from dlcprune.core.formats.parquet import HubParquetReader, ParquetReader  # isort: skip
from dlcprune.core.formats.hfdisk import HfDatasetReader  # isort: skip
from dlcprune.core.formats.webdataset import WebDatasetReader  # isort: skip
from dlcprune.core.formats.manifestzip import ManifestZipReader  # isort: skip
from dlcprune.core.formats import registry as _registry  # isort: skip

FORMATS: tuple[str, ...] = _registry.names()

__all__ = [
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "AlpacaReader",
    "ChatReader",
    "DollyReader",
    "FolderReader",
    "HfDatasetReader",
    "HubParquetReader",
    "ImageReader",
    "Instruction",
    "JsonSniff",
    "JsonlReader",
    "ManifestReader",
    "ManifestZipReader",
    "NpzReader",
    "ParquetReader",
    "ReadLimits",
    "Reader",
    "ShareGptReader",
    "TarReader",
    "TextReader",
    "WebDatasetReader",
    "ZipReader",
    "detect_format",
    "open_dataset",
    "register",
]
