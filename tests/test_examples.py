"""The example configuration file in examples/ loads and builds what it says."""
import os

from cnnlab.models.config_file import load_config_file

HERE = os.path.dirname(os.path.abspath(__file__))


def test_mnist_cnn_example():
    model, train = load_config_file(os.path.join(HERE, "..", "examples", "mnist_cnn.toml"))
    # conv 3*3*1*32+32, batch norm 4*32 (half of it moving statistics), conv 3*3*32*64+64, dense 3136*10+10
    assert model.count_params() == 320 + 128 + 18496 + 31370
    assert model.output_shape == (None, 10)
    assert train["batch_size"] == 128 and train["augment"] == "shift:1"
