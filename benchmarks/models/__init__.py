"""Other people's models: which smp encoders dsplug wraps (``adapter_coverage.py``), smp's own
model tests on wrapped models (``smp_model_tests.py``), and your own training loop with an smp
Unet (``own_loop.py``).

Each runs as ``python benchmarks/models/<name>.py``; stored results: ``results/``.
"""
