"""rnnkit: every recurrent network of the lecture as a tested, fast PyTorch layer."""

from . import cells, engine, errors

__version__ = "0.1.0"

__all__ = ["cells", "engine", "errors", "__version__"]
