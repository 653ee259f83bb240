"""The lecture's four Keras programs, with only their imports changed, on small generated data."""

import numpy as np
import pytest

from rnnkit import layers, regularizers
from rnnkit.layers import GRU, LSTM, Dense, Embedding, SimpleRNN
from rnnkit.models import Sequential
from rnnkit.optimizers import RMSprop

max_features = 10000
epochs = 2
batch_size = 256


@pytest.fixture
def imdb_like():
    """Token ids in [1, max_features) padded to 50 steps, binary labels: IMDB's shapes, small."""
    rng = np.random.default_rng(0)
    n, maxlen = 600, 50
    input_train = rng.integers(1, max_features, size=(n, maxlen))
    y_train = rng.integers(0, 2, size=n).astype("float32")
    # make the label learnable: positive reviews use a "good" token somewhere
    input_train[y_train == 1, rng.integers(0, maxlen)] = 7
    return input_train, y_train


def test_simple_rnn_program(imdb_like):
    input_train, y_train = imdb_like
    modelIMDBSimpleRNN = Sequential()
    modelIMDBSimpleRNN.add(Embedding(max_features, 32))
    modelIMDBSimpleRNN.add(SimpleRNN(32))
    modelIMDBSimpleRNN.add(Dense(1, activation='sigmoid'))
    modelIMDBSimpleRNN.compile(optimizer='rmsprop', loss='binary_crossentropy', metrics=['acc'])
    historyIMDBSimpleRNN = modelIMDBSimpleRNN.fit(input_train, y_train,
                                                  epochs=epochs,
                                                  batch_size=batch_size,
                                                  validation_split=0.2)
    assert set(historyIMDBSimpleRNN.history) == {"loss", "acc", "val_loss", "val_acc"}
    assert len(historyIMDBSimpleRNN.history["loss"]) == epochs
    assert modelIMDBSimpleRNN.count_params() == 322_113


def test_lstm_program(imdb_like):
    input_train, y_train = imdb_like
    modelIMDBLSTM = Sequential()
    modelIMDBLSTM.add(Embedding(max_features, 32))
    modelIMDBLSTM.add(LSTM(32))
    modelIMDBLSTM.add(Dense(1, activation='sigmoid'))

    modelIMDBLSTM.compile(optimizer='rmsprop',
                          loss='binary_crossentropy',
                          metrics=['acc'])
    historyIMDBLSTM = modelIMDBLSTM.fit(input_train, y_train,
                                        epochs=epochs,
                                        batch_size=batch_size,
                                        validation_split=0.2)
    assert len(historyIMDBLSTM.history["val_acc"]) == epochs
    assert modelIMDBLSTM.count_params() == 328_353


@pytest.mark.parametrize("reset_after,count", [(True, 326_369), (False, 326_273)])
def test_gru_program(imdb_like, reset_after, count):
    input_train, y_train = imdb_like
    modelIMDBGRU = Sequential()
    modelIMDBGRU.add(Embedding(max_features, 32))
    modelIMDBGRU.add(GRU(32, reset_after=reset_after))
    modelIMDBGRU.add(Dense(1, activation='sigmoid'))

    modelIMDBGRU.compile(optimizer='rmsprop',
                         loss='binary_crossentropy',
                         metrics=['acc'])
    historyIMDBGRU = modelIMDBGRU.fit(input_train, y_train,
                                      epochs=epochs,
                                      batch_size=batch_size,
                                      validation_split=0.2)
    assert np.isfinite(historyIMDBGRU.history["loss"]).all()
    assert modelIMDBGRU.count_params() == count


def test_bidirectional_gru_program_from_a_generator():
    rng = np.random.default_rng(0)
    float_data = rng.standard_normal((2000, 14)).astype("float32")

    def generator(lookback=30, batch=32):
        while True:
            rows = rng.integers(lookback, len(float_data) - 1, size=batch)
            samples = np.stack([float_data[r - lookback:r] for r in rows])
            targets = float_data[rows + 1, 1]
            yield samples, targets

    train_gen, val_gen, val_steps = generator(), generator(), 3

    modelTEMPBidirectGRU = Sequential()
    modelTEMPBidirectGRU.add(layers.Bidirectional(layers.GRU(32, kernel_regularizer=regularizers.l2(0.001)),
                                                  input_shape=(None, float_data.shape[-1])))
    modelTEMPBidirectGRU.add(layers.Dense(1))

    modelTEMPBidirectGRU.compile(optimizer=RMSprop(), loss='mae')
    historyTEMPBidirectGRU = modelTEMPBidirectGRU.fit_generator(train_gen,
                                                                steps_per_epoch=5,
                                                                epochs=2,
                                                                validation_data=val_gen,
                                                                validation_steps=val_steps)
    assert set(historyTEMPBidirectGRU.history) == {"loss", "val_loss"}
    assert modelTEMPBidirectGRU.count_params() == 9_281


def test_masks_flow_from_embedding_through_recurrent_layers():
    model = Sequential([Embedding(50, 8, mask_zero=True), LSTM(6), Dense(1)])
    x = np.array([[0, 0, 3, 4, 5], [3, 4, 5, 0, 0]])
    out = model.predict(x, verbose=0)
    alone = model.predict(np.array([[3, 4, 5]]), verbose=0)
    np.testing.assert_allclose(out[0], alone[0], atol=1e-6)
    np.testing.assert_allclose(out[1], alone[0], atol=1e-6)


def test_teacher_forcing_through_fit():
    """IO transduction y_t = x_{t-1} + x_t: the feedback RNN trains with y_{t-1} fed in by fit()."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 12, 1)).astype("float32")
    y = x + np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], 1)
    model = Sequential([SimpleRNN(16, output_units=1, teacher_forcing=True, return_sequences=True)])
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    free_running = model.evaluate(x, y, verbose=0)  # inference feeds o_{t-1} back
    assert free_running < 0.5 * float(np.var(y))
