"""One module per artifact part; each module's docstring is the table of the arrays it owns.

The registry and the reader are :mod:`recsvc.artifacts.schema`; the base class is :mod:`recsvc.artifacts.part`.
"""
