"""The contract every side imports: errors, hooks, parameters, loss and dataset types,
the registry and plugin manager, the benchmark-file model, limits and thread policy.

Plugins, the engine, reporting and the CLI all build on these modules, so they import
nothing of those layers and no torch at import time except where a type is a torch
type (losses, dataset splits). A plugin author reads ``hookspecs.py`` and ``losses.py``.
"""
