"""Training: losses, metrics, optimizers, regularizers, callbacks and the fit loop."""
