"""The offline path: point-in-time sequences for training data and the materialization writers."""
