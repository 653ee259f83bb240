"""Keras-named layers; every one is a torch.nn.Module."""

from .base import Layer
from .cells import DropoutRNNCell, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells
from .core import (
    BatchNormalization,
    Conv1D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    LayerNormalization,
    Masking,
    MaxPooling1D,
    TimeDistributed,
)
from .esrnn import ESRNN
from .forecasting import (
    DLinear,
    MeanForecast,
    NLinear,
    ParallelDecoder,
    RecurrentForecaster,
    RecursiveDecoder,
    SeasonalNaive,
    SegmentEmbedding,
    SegRNN,
    WindowNormalization,
)
from .recurrent import GRU, LSTM, RNN, Readout, SimpleRNN
from .wrappers import Bidirectional, DilatedRNN, Stacked, exponential_dilations

__all__ = [
    "Layer",
    "RNN", "SimpleRNN", "LSTM", "GRU", "Readout", "Bidirectional", "Stacked", "DilatedRNN",
    "exponential_dilations",
    "SimpleRNNCell", "LSTMCell", "GRUCell", "StackedRNNCells", "DropoutRNNCell",
    "Dense", "Embedding", "Masking", "Dropout", "BatchNormalization", "LayerNormalization", "Conv1D",
    "MaxPooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling1D", "Flatten", "TimeDistributed",
    "WindowNormalization", "SegmentEmbedding", "ParallelDecoder", "RecursiveDecoder", "SegRNN",
    "RecurrentForecaster", "NLinear", "DLinear", "SeasonalNaive", "MeanForecast", "ESRNN",
]
