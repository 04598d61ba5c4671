"""The convergence ablation on real data (the paper's Tables 4-5), sized for a CPU.

``convergence.py`` runs it (``python benchmarks/convergence/convergence.py``); ``settings.py``
holds its settings and variants, ``runs.py`` one training run and the step-time ratios,
``driver.py`` the runs in parallel and their result, ``analysis.py`` the figures over seeds and
the comparisons with ``none``. Stored results: ``results/``.
"""
