"""Keras 3 files into rnnkit: ``.keras`` archives and ``.weights.h5`` weight files.

A ``.keras`` file is a zip holding ``config.json`` (the architecture) and ``model.weights.h5``
(the weights, one HDF5 group per layer: ``layers/<name>/vars/<i>``, recurrent layers under
``layers/<name>/cell/vars/<i>``, Bidirectional under ``forward_layer`` / ``backward_layer``).
The config becomes an rnnkit ``Sequential``; each layer's arrays go through the layer's
``set_weights``, which takes Keras's layouts and converts gate orders and biases in one place
(``interop.keras.cell_from_keras``). A ``.weights.h5`` file has no architecture: pass the rnnkit
model it belongs to.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from .. import optional
from ..errors import ConfigError, DataFormatError
from ..models import persistence

_RECURRENT = ("SimpleRNN", "LSTM", "GRU")
_COMMON_RNN = ("units", "activation", "use_bias", "return_sequences", "go_backwards", "dropout",
               "recurrent_dropout")
_RNN_EXTRA = {"SimpleRNN": (), "LSTM": ("recurrent_activation",),
              "GRU": ("recurrent_activation", "reset_after")}


def load_keras(path, model=None):
    """Load a Keras 3 ``.keras`` model, or a ``.weights.h5`` file into ``model``.

    ``load_keras('model.keras')`` returns a new rnnkit Sequential with the file's layers
    (InputLayer, Embedding, Dense, Dropout, SimpleRNN, LSTM, GRU, Bidirectional) and weights.
    ``load_keras('model.weights.h5', model=m)`` loads the weights into the rnnkit model ``m``
    (built, with the same layers in the same order) and returns it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_keras: no such file: {path}")
    name = path.name
    if name.endswith(".keras"):
        config, weights = _read_archive(path)
        if model is None:
            model = model_from_config(config, str(path))
        _load_into(model, weights, str(path), _config_names(config))
        return model
    if name.endswith(".weights.h5"):
        if model is None:
            raise ConfigError(f"load_keras: {path} holds weights only; pass the architecture: "
                              "load_keras(path, model=rnnkit_model)")
        _load_into(model, _read_h5(path.read_bytes(), str(path)), str(path), None)
        return model
    raise ConfigError(f"load_keras: expected a path ending in .keras or .weights.h5, got {name!r}")


# -- reading -------------------------------------------------------------------------------------
def _read_archive(path: Path) -> tuple[dict, dict[str, list[np.ndarray]]]:
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataFormatError(f"{path}: not a Keras 3 .keras archive with config.json and "
                              f"model.weights.h5 ({err})") from None
    return config, _read_h5(weights, str(path))


def _read_h5(data: bytes, where: str) -> dict[str, list[np.ndarray]]:
    """{layer group name: its arrays in Keras's order (cell vars; forward then backward)}."""
    h5py = optional.require("h5py", "reading a Keras weights file")
    try:
        handle = h5py.File(io.BytesIO(data), "r")
    except OSError as err:
        raise DataFormatError(f"{where}: not an HDF5 weights file ({err})") from None
    with handle:
        if "layers" not in handle:
            raise DataFormatError(f"{where}: no 'layers' group; is this a Keras 3 weights file?")
        return {name: _group_arrays(group) for name, group in handle["layers"].items()}


def _group_arrays(group) -> list[np.ndarray]:
    out = []
    for part in ("forward_layer", "backward_layer"):
        if part in group:
            out += _group_arrays(group[part])
    for holder in (group.get("cell"), group):  # a recurrent layer keeps its arrays in its cell
        if holder is not None and "vars" in holder:
            out += [np.asarray(holder["vars"][k]) for k in sorted(holder["vars"], key=int)]
    return out


# -- architecture ----------------------------------------------------------------------------------
def model_from_config(config: dict, where: str = "config"):
    """An rnnkit Sequential built from a Keras 3 Sequential's config.json."""
    from ..models import Sequential

    if config.get("class_name") != "Sequential":
        raise ConfigError(f"{where}: only Keras Sequential models can be loaded, got "
                          f"{config.get('class_name')!r}")
    entries = config["config"]["layers"]
    input_shape = _input_shape(entries, config["config"])
    layers = [layer_from_config(e, where) for e in entries if e["class_name"] != "InputLayer"]
    model = Sequential(layers, name=config["config"].get("name"))
    if input_shape is None:
        raise ConfigError(f"{where}: the model has no input shape (it was never built); build "
                          "the Keras model before saving it")
    model.build(input_shape)
    return model


def _input_shape(entries: list[dict], config: dict):
    for e in entries:
        if e["class_name"] == "InputLayer":
            return tuple(e["config"]["batch_shape"])
    build = config.get("build_input_shape") or (entries[0].get("build_config") or {}).get(
        "input_shape") if entries else None
    return None if build is None else tuple(build)


def _config_names(config: dict) -> list[str]:
    return [e["config"]["name"] for e in config["config"]["layers"]
            if e["class_name"] != "InputLayer"]


def layer_from_config(entry: dict, where: str = "config"):
    """One Keras layer config ({'class_name', 'config'}) as an unbuilt rnnkit layer."""
    from .. import layers

    kind, cfg = entry["class_name"], entry["config"]
    name = cfg.get("name")
    if kind == "Dense":
        return layers.Dense(cfg["units"], activation=_activation(cfg["activation"]),
                            use_bias=cfg["use_bias"], name=name)
    if kind == "Embedding":
        return layers.Embedding(cfg["input_dim"], cfg["output_dim"],
                                mask_zero=cfg.get("mask_zero", False), name=name)
    if kind == "Dropout":
        return layers.Dropout(cfg["rate"], name=name)
    if kind in _RECURRENT:
        return _recurrent_from_config(kind, cfg, where)
    if kind == "Bidirectional":
        backward = cfg.get("backward_layer")
        return layers.Bidirectional(
            layer_from_config(cfg["layer"], where), merge_mode=cfg.get("merge_mode", "concat"),
            backward_layer=None if backward is None else layer_from_config(backward, where),
            name=name)
    raise ConfigError(f"{where}: layer {name!r} is a Keras {kind}; rnnkit loads InputLayer, "
                      "Embedding, Dense, Dropout, SimpleRNN, LSTM, GRU and Bidirectional")


def _recurrent_from_config(kind: str, cfg: dict, where: str):
    from .. import layers

    if cfg.get("return_state") or cfg.get("stateful"):
        raise ConfigError(f"{where}: layer {cfg['name']!r} uses return_state or stateful, which "
                          "a Sequential cannot load")
    kwargs = {k: cfg[k] for k in (*_COMMON_RNN, *_RNN_EXTRA[kind]) if k in cfg}
    for key in ("activation", "recurrent_activation"):
        if key in kwargs:
            kwargs[key] = _activation(kwargs[key])
    return getattr(layers, kind)(name=cfg["name"], **kwargs)


def _activation(value):
    """Keras 3 writes an activation as its name, or as a serialized function dict."""
    if isinstance(value, dict):
        return value.get("config", value.get("class_name"))
    return value


# -- weights ---------------------------------------------------------------------------------------
def _load_into(model, weights: dict[str, list[np.ndarray]], where: str, names) -> None:
    """Give each rnnkit layer with weights the group of its Keras twin, then ``set_weights``."""
    from ..models.model import top_layers

    targets = [layer for layer in top_layers(model) if layer.get_weights()]
    groups = _match(targets, weights, names, where)
    for layer, group in zip(targets, groups):
        layer.set_weights(weights[group])
    unused = sorted(set(g for g, a in weights.items() if a) - set(groups))
    if unused:
        raise DataFormatError(f"{where}: weights for {unused} match no layer of {model.name}")


def _match(targets, weights: dict, names, where: str) -> list[str]:
    """The group of each target layer: by name when every name is present, else by kind order.

    Keras numbers same-kind layers as they are created (gru, gru_1, gru_2, ...), so the k-th
    rnnkit GRU takes the k-th Keras GRU group.
    """
    if names is None:
        names = [layer.name for layer in targets]
    if all(n in weights for n in names) and len(names) == len(targets):
        return list(names)
    by_kind: dict[str, list[str]] = {}
    for group in sorted((g for g, a in weights.items() if a), key=_group_key):
        by_kind.setdefault(_group_key(group)[0], []).append(group)
    out = []
    for layer in targets:
        kind = _snake(type(layer).__name__)
        if not by_kind.get(kind):
            raise DataFormatError(f"{where}: no weights left for layer {layer.name} ({kind}); "
                                  f"the file has groups {sorted(weights)}")
        out.append(by_kind[kind].pop(0))
    return out


def _group_key(group: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*?)(?:_(\d+))?", group)
    return match.group(1), int(match.group(2) or 0)


def _snake(cls_name: str) -> str:
    snake = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", snake).lower()


persistence.register_loader((".keras", ".weights.h5"), load_keras)  # load_model reads them too
