"""``python -m dlcprune.cli``: the ``dlcprune`` command."""

from dlcprune.cli import main

main()
