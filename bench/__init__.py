"""cpubsub's benchmark suite: ``python -m bench [--quick]``.

Each scenario module (``s_*.py``) has a NAME, a TITLE and ``run(settings)``
returning the tables it printed.  See bench/README.md.
"""
