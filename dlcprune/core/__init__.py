"""The torch-free core: dataset formats and their safety limits, parameters and their defaults,
errors, and selection strategies (pure numpy).

It imports neither the service (``app``) nor the worker, nor torch, FastAPI or SQLAlchemy
(import-linter contracts in ``pyproject.toml``, ``[tool.importlinter]``, checked by
``tests/test_layers.py`` in every ``make test``).
"""
