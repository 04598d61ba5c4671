"""The field's numbers (issue 29): the ``field`` recipe against the published figures, three
rows (ISBI 2012 native patches, Task04 3D patches, Task04 2D slices), ``none`` and a
deep-supervision mode each (``field.py``); stored results: ``results/``.

Runs as ``python benchmarks/field/field.py``.
"""
