"""Keras-named layers; every one is a torch.nn.Module."""

from .base import Layer

__all__ = ["Layer"]
