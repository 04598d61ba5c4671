"""Label efficiency: one convergence run per training-set size, and its table and plot.

``python benchmarks/label_efficiency/label_efficiency.py``; stored results: ``results/``.
"""
