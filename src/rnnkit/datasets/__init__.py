"""Old home of the dataset loaders; they live in :mod:`rnnkit.data.datasets` now.

``from rnnkit.datasets import imdb`` and ``import rnnkit.datasets.imdb`` give the very modules of
``rnnkit.data.datasets`` (the same objects, so patching one patches the other).
"""

import sys

from ..data.datasets import ett, imdb, jena, m4

for _module in (ett, imdb, jena, m4):
    sys.modules[f"{__name__}.{_module.__name__.rpartition('.')[2]}"] = _module

__all__ = ["ett", "imdb", "jena", "m4"]
