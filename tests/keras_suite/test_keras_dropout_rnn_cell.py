"""Keras 3's DropoutRNNCell tests, run against rnnkit.

Source: keras-team/keras, keras/src/layers/rnn/dropout_rnn_cell_test.py at commit
3422977a5e38fb2f7709aaa9a08e47f0c43d0f60 (keras_harness.KERAS_COMMIT). The cell is in
keras_cells.py. test_seed_tracking (it counts Keras's SeedGenerator variables) and the
non-trainable-variable count and mixed-precision run of test_basics are Keras-internal and left
out; see README.md here.
"""

from keras_cells import RNNCellWithDropout
from keras_harness import run_layer_test

from rnnkit import layers


def test_basics():
    run_layer_test(
        layers.RNN,
        init_kwargs={"cell": RNNCellWithDropout(5, seed=1337)},
        input_shape=(3, 2, 4),
        call_kwargs={"training": True},
        expected_output_shape=(3, 5),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )
