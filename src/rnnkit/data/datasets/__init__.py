"""Datasets of the lecture and its reproductions, loaded as Keras loads them.

``from rnnkit.data.datasets import imdb`` (or, as before, ``from rnnkit.datasets import imdb``)
then ``imdb.load_data(num_words=10000)``.
"""

from . import ett, imdb, jena, m4

__all__ = ["ett", "imdb", "jena", "m4"]
