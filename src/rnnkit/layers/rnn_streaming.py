"""``RNN``'s part for online use: one step at a time (``step``) and a bound streaming step (``stepper``).

Both compute what calling the layer on the whole sequence computes, step by step, as the layer
runs in inference (no dropout). A layer that reads steps that have not come yet (go_backwards,
dilation > 1) cannot stream and says so.
"""

from __future__ import annotations

from torch import Tensor

from ..engine import step as engine_step
from ..engine import stepper as engine_stepper
from ..errors import ConfigError, NotBuiltError, ShapeError


class Streaming:
    """Mixin of ``RNN``: ``step`` and ``stepper``.

    Reads the layer's ``cell``, ``name``, ``backend``, ``go_backwards``, ``dilation``,
    ``stateful``, ``readout``, ``has_feedback`` and ``initial_state``; calls ``ensure_built``,
    ``check_input_shape``, ``start_state``, ``carry_state`` and ``output_sequence``; sets
    ``last_kernel``.
    """

    def step(self, x_t: Tensor, states=None, mask: Tensor | None = None):
        """One step for online use: x_t (B, I) and the states after step t-1 (None: the layer's
        start state) -> (y_t (B, out), states after step t), as calling the layer on the whole
        sequence computes step by step (no dropout: the layer as in inference). A stateful layer
        carries the states itself when ``states`` is None. ``mask`` (B,) bool: a masked row
        carries its states and outputs zeros, as the whole-sequence call does with
        ``zero_output_for_mask=True`` (to repeat the last output, Keras's default, keep the
        previous y_t: the step does not hold it).

        >>> layer = LSTM(8)
        >>> y, states = layer.step(torch.randn(1, 3))
        >>> y, states = layer.step(torch.randn(1, 3), states)
        """
        if x_t.dim() != 2:
            raise ShapeError(f"{self.name}.step: expected x_t of shape (B, I), got {tuple(x_t.shape)}")
        if self.go_backwards or self.dilation > 1:
            raise ConfigError(f"{self.name}.step: a layer with go_backwards or dilation > 1 reads "
                              "steps that have not come yet; call it on the whole sequence")
        x = x_t[:, None]  # (B, 1, I)
        self.ensure_built(tuple(x.shape))
        self.check_input_shape(tuple(x.shape))
        state = self.start_state(x, states)
        y, final, self.last_kernel = engine_step(self.cell, x_t, state, mask, self.backend)
        if states is None:
            self.carry_state(final)
        out = self.output_sequence(y[:, None], x)[:, 0]
        return (out if mask is None else out * mask[:, None].to(out.dtype)), final

    def stepper(self):
        """``f(x_t, states) -> (y_t, states)``: ``step`` with its checks done once, for a
        streaming loop (states None: the start state). A layer whose output is its state (no
        readout or feedback, not stateful) gets the engine's bound step (``engine.stepper``),
        which for the standard cells is one call of torch's cell op; any other calls ``step``."""
        if self.cell is None:
            raise NotBuiltError(f"{self.name}.stepper: build the layer first (call it, or "
                                "build(input_shape))")
        plain = (self.readout is None and not self.has_feedback and not self.stateful
                 and self.initial_state is None and not self.go_backwards and self.dilation == 1)
        if not plain:
            return lambda x_t, states=None: self.step(x_t, states)
        fn = engine_stepper(self.cell, self.backend)
        self.last_kernel = fn.kernel
        return fn
