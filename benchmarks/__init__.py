"""The figures dsplug publishes: one package per study, each with its scripts, its report and
its stored results (``<study>/results/``) beside them.

- ``convergence/``: the ablation on real data (the paper's Tables 4-5), the recipe ablation.
- ``label_efficiency/``: test Dice against the number of training cases.
- ``native/``: 3D patches and ISBI 2012 native patches against the resize path.
- ``cost/``: step time, inference, evaluation speed, wrapping, ``import dsplug``, data
  loading, loss scales.
- ``semi/``: few labelled cases and the unlabelled rest (Task04, ISBI 2012, the demo's phantoms).
- ``field/``: the ``field`` recipe against the published figures.
- ``models/``: smp encoders wrapped, smp's model tests, your own training loop.
- ``demo/``: ``dsplug demo`` over seeds.

Every script runs from the repository root by its path: ``python benchmarks/<study>/<name>.py``.
``guidance.py`` writes the results sections of the README and ``docs/results/`` from the stored
JSON (``--check`` fails on a stale one); ``report.py`` the cost and convergence page. Shared:
``_common.py`` (the runners' settings, timing, output), ``_tables.py`` (Markdown cells),
``_sections.py`` (generated sections), ``paper.py`` (the paper's published figures), and the
seed statistics in :mod:`dsplug.metrics.paired`.
"""
