"""The project's vocabulary, defined once: method, strategy and export-format names and the
selection defaults that every layer shares.

Standard library only, so that every layer can import it: the client (httpx alone), the torch-free
core, the service, the engine and the CLI. Nothing here imports the rest of the project (an
import-linter contract holds it). Where a name has behaviour, the behaviour lives in its layer
(``dlcprune.core.selection`` for strategies, ``app.selections.export`` for export formats).
"""

from __future__ import annotations

# The models served without a weights file (the backbone registry, worker.scoring.backbones).
DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_TEXT_MODEL = "all-minilm-l6-v2"

# Scoring methods: DLC and the baselines it is compared with.
TRAINING_FREE: tuple[str, ...] = ("random", "herding", "kcenter_greedy", "moderate")
TRAINING_BASED: tuple[str, ...] = (
    "el2n",
    "grand",
    "forgetting",
    "entropy",
    "margin",
    "least_confidence",
)
BASELINES: tuple[str, ...] = TRAINING_FREE + TRAINING_BASED
METHODS: tuple[str, ...] = ("dlc", *BASELINES)
DEFAULT_METHOD = "dlc"

# Selection strategies over a job's scores (dlcprune.core.selection.select).
STRATEGIES: tuple[str, ...] = ("flexrand", "easy", "hard", "random", "stratified", "ccs")
# Strategies over a job's stored embeddings (dlcprune.core.selection.features), not its scores.
FEATURE_STRATEGIES: tuple[str, ...] = ("kcenter", "herding", "moderate")
# Every strategy a selection may name.
SELECTION_STRATEGIES: tuple[str, ...] = STRATEGIES + FEATURE_STRATEGIES
DEFAULT_STRATEGY = "flexrand"
# FlexRand's easy-pool share: the paper's 0.5 (no other share's difference from it had a 95%
# interval excluding zero in the quality benchmark, docs/quality.md).
DEFAULT_SPLIT = 0.5
# CCS: the share of the hardest samples dropped before stratified sampling.
DEFAULT_HARD_CUTOFF = 0.1

# How a selection's samples can be exported (app.selections.export).
EXPORT_FORMATS: tuple[str, ...] = (
    "original",
    "manifest-csv",
    "manifest-jsonl",
    "parquet",
    "bundle",
)
DEFAULT_EXPORT_FORMAT = "original"

# How a selection's kept samples can be written into an object store (app.exports): the
# original layout (class folders of images, the kept rows of other formats), the manifests and
# Parquet (every sample, scored and flagged), WebDataset tar shards and a Hugging Face
# ``save_to_disk`` directory (the kept samples).
STORE_EXPORT_FORMATS: tuple[str, ...] = (
    "original",
    "manifest-csv",
    "manifest-jsonl",
    "parquet",
    "webdataset",
    "hf",
)

# Kinds of work, each on its own Celery queue (app.queue routes a task to its kind's queue; the
# queue names are settings, DLCPRUNE_QUEUE_<KIND>). GPU workers take the scoring kinds, CPU
# workers the rest (``dlcprune worker --kind gpu|cpu|all``).
WORK_KINDS: tuple[str, ...] = ("index", "score", "shards", "export", "evaluate")
GPU_WORK: tuple[str, ...] = ("score", "shards")
CPU_WORK: tuple[str, ...] = tuple(kind for kind in WORK_KINDS if kind not in GPU_WORK)
WORKER_KINDS: tuple[str, ...] = ("gpu", "cpu", "all")

# Priorities within a queue: work of a higher priority is taken first, in order of arrival
# within one priority.
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")
DEFAULT_PRIORITY = "normal"

# Webhook events: "<resource>.<what happened>" (app.webhooks emits them with the resource).
WEBHOOK_EVENTS: tuple[str, ...] = (
    "dataset.ready",
    "dataset.invalid",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "export.succeeded",
    "export.failed",
    "evaluation.succeeded",
    "evaluation.failed",
)
