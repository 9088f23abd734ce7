"""The plugins here run only through tests/test_legacy_plugins.py, each with its own
``sys.path``: two example distributions share one module name (``my_loss_pkg``)."""

collect_ignore_glob = ["*"]
