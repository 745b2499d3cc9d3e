"""Training pipeline: data, features, model, train, quantize, evaluate, export (see README.md)."""
import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) says nothing a user can act on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
