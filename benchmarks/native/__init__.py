"""Native resolution: 3D patches on Task04 (``native_3d.py``) and ISBI 2012 native patches
against the resize path (``isbi_patches.py``).

``python benchmarks/native/native_3d.py``, ``python benchmarks/native/isbi_patches.py``; stored
results: ``results/``.
"""
