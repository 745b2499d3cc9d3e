"""Training pipeline: data, features, model, train, quantize, evaluate, export (see README.md)."""
