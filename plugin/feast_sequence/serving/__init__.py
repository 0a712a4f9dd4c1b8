"""The serving layer: per-use-case shaping of shared sequences (filter, size, enrich, featurize).

Declare a use case with ``feast_sequence.SequenceUseCase`` in the feature repository; serve it with
Feast's ``get_online_features`` / ``feast serve`` and train on it with ``feast_sequence.get_training_data``.
The stages are one module each; ``pipeline`` composes them, ``read_plan`` plans the reads of every
online request (Feast's plain ones too) and ``serving_log`` records what was served. See docs/serving.md.
"""
