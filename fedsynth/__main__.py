"""``python -m fedsynth``: the same entry point as the ``fedsynth`` command."""

from fedsynth.cli import main

main()
