"""cnnlab: convolutional neural networks with a hand-written NumPy engine and a Keras-style API."""
__version__ = "0.1.0"
