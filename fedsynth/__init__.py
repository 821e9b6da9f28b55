"""fedsynth: federated, differentially private synthetic data.

Institutions each run a client next to their own table; a coordinator combines their DP-SGD
generator updates through secure aggregation into one global synthesizer.
"""

from fedsynth.common.version import __version__


def __getattr__(name: str):
    # Lazy so that `import fedsynth` (e.g. for the CLI's --help) does not import torch.
    if name == "Synthesizer":
        from fedsynth.common.synthesizer import Synthesizer

        return Synthesizer
    if name == "Schema":
        from fedsynth.common.data.schema import Schema

        return Schema
    raise AttributeError(name)


__all__ = ["Synthesizer", "Schema", "__version__"]
