"""rnnkit's version, in a module of its own: the modules that write it into saved files sit below
the package face (``rnnkit/__init__.py``), which must not be imported from below."""

__version__ = "0.1.0"
