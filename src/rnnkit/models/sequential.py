"""Sequential: a stack of layers, each feeding the next, with Keras's masks and summary."""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError, NotBuiltError
from ..layers import config as _config
from ..layers.base import Layer, Shape
from ..training import data as _data
from . import persistence
from .model import Model


@persistence.register_model_class
class Sequential(Model):
    """``Sequential([Embedding(10000, 32), SimpleRNN(32), Dense(1, activation='sigmoid')])``.

    The model is built (its shapes known) when the first layer has ``input_shape``, on
    ``build(input_shape)`` (batch axis included, None allowed) or on the first batch.
    Masks flow as Keras's: a layer that ``supports_masking`` gets ``mask=``, and
    ``layer.compute_mask(x, mask)`` is the next layer's mask.
    """

    def __init__(self, layers=None, name: str | None = None):
        super().__init__(name)
        self.layers = nn.ModuleList()
        self.input_shape: Shape | None = None
        self.output_shapes: list = []
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise ConfigError(f"{self.name}.add: expected an rnnkit Layer, "
                              f"got {type(layer).__name__}")
        self.layers.append(layer)
        if self.built:
            self._build_layer(layer, self.output_shapes[-1] if self.output_shapes
                              else self.input_shape)
        elif len(self.layers) == 1 and layer.declared_input_shape is not None:
            self.build((None, *layer.declared_input_shape))

    def build(self, input_shape: Shape) -> None:
        """Build every layer from the input shape, batch axis first: ``build((None, T, I))``."""
        self.input_shape = tuple(input_shape)
        self.output_shapes = []
        shape = self.input_shape
        for layer in self.layers:
            shape = self._build_layer(layer, shape)
        self.built = True

    def _build_layer(self, layer: Layer, input_shape: Shape) -> Shape:
        layer.ensure_built(input_shape)
        shape = layer.compute_output_shape(input_shape)
        self.output_shapes.append(shape)
        return shape

    def build_from_batch(self, x: Tensor) -> None:
        if not self.built:
            self.build((None, *x.shape[1:]))

    @property
    def output_shape(self) -> Shape:
        self._require_built("output_shape")
        return self.output_shapes[-1]

    def call_with_mask(self, x, mask: Tensor | None = None,
                       targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Run the layers; ``targets`` reach the layers that train with teacher forcing."""
        if not isinstance(x, Tensor):
            x = _data.to_tensor(x).to(_data.device_of(self))
        self.build_from_batch(x)
        for layer in self.layers:
            kwargs = {"mask": mask} if layer.supports_masking else {}
            if targets is not None and getattr(layer, "teacher_forcing", False):
                kwargs["targets"] = targets
            y = layer(x, **kwargs)
            mask = layer.compute_mask(x, mask)
            x = y
        return x, mask

    def forward(self, x, mask: Tensor | None = None) -> Tensor:
        return self.call_with_mask(x, mask)[0]

    # -- config (Keras's get_config / from_config) -------------------------------------------
    def get_config(self) -> dict:
        """``{"name", "layers": [{"class_name", "config"}, ...], "build_input_shape"}``."""
        return {"name": self.name,
                "layers": [_config.serialize_layer(layer) for layer in self.layers],
                "build_input_shape": None if self.input_shape is None else list(self.input_shape)}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Sequential:
        """The model ``get_config`` describes, built when the input shape was known."""
        model = cls([_config.deserialize_layer(spec, custom_objects)
                     for spec in config.get("layers", [])], name=config.get("name"))
        shape = config.get("build_input_shape")
        if shape is not None and not model.built:
            model.build(tuple(shape))
        return model

    def summary(self, line_length: int = 65, print_fn=print) -> None:
        """Print Keras's table: layer (type), output shape, param #, and the totals."""
        self._require_built("summary")
        rows = [(f"{layer.name} ({type(layer).__name__})", _shape_str(shape),
                 str(layer.count_params()))
                for layer, shape in zip(self.layers, self.output_shapes)]
        total = sum(layer.count_params() for layer in self.layers)
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        print_summary(self.name, rows, total, trainable, line_length, print_fn)

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise NotBuiltError(f"{self.name}: {what} needs the model built; pass input_shape "
                                "to the first layer, call build(input_shape), or call the "
                                "model on data (e.g. fit) first")


def _shape_str(shape) -> str:
    if isinstance(shape, list):
        return "[" + ", ".join(_shape_str(s) for s in shape) + "]"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def print_summary(title: str, rows, total: int, trainable: int, line_length: int = 65,
                  print_fn=print) -> None:
    """Keras's summary table: ``rows`` of (layer, output shape, param #) strings."""
    stops = [int(line_length * f) for f in (0.45, 0.85, 1.0)]

    def line(fields) -> str:
        out = ""
        for field, stop in zip(fields, stops):
            out = (out + " " + field)[:stop - 1].ljust(stop)
        return out.rstrip()

    print_fn(f'Model: "{title}"')
    print_fn("_" * line_length)
    print_fn(line(["Layer (type)", "Output Shape", "Param #"]))
    print_fn("=" * line_length)
    for i, row in enumerate(rows):
        print_fn(line(row))
        print_fn("=" * line_length if i == len(rows) - 1 else "")
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")
    print_fn("_" * line_length)
