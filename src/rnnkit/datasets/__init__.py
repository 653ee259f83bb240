"""Datasets of the lecture and its reproductions, loaded as Keras loads them.

``from rnnkit.datasets import imdb`` (ETT, IMDB, Jena, M4) then ``imdb.load_data(num_words=10000)``, as
``keras.datasets``; every loader downloads into a cache with a pinned checksum, or reads a local
``path``.
"""

from . import ett, imdb, jena, m4

__all__ = ["ett", "imdb", "jena", "m4"]
