"""What deep supervision costs: the training step (``step_time.py``), inference
(``inference.py``), wrapping a model (``wrap_time.py``), ``import dsplug`` (``import_time.py``),
data loading (``data_loading.py``), the loss terms' scales (``loss_scales.py``) and batches
without foreground (``degenerate_batches.py``).

Each runs as ``python benchmarks/cost/<name>.py``; stored results: ``results/``.
"""
