"""Learning from unlabelled images: few labelled cases and the unlabelled rest (``semi.py``),
and the pseudo-mask designs tried (``semi_designs.py``).

``python benchmarks/semi/semi.py``, ``python benchmarks/semi/semi_designs.py``; stored results:
``results/``.
"""
