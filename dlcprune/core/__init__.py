"""The torch-free core: dataset formats and their safety limits, parameters and their defaults,
errors, and selection strategies (pure numpy).

It imports neither the service (``app``) nor the worker, nor torch, FastAPI or SQLAlchemy
(import-linter contracts in ``.importlinter``, run by ``make test``).
"""
