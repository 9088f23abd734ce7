"""What a run leaves on disk: the record schema, the record store and its atomic
writes, the results-folder lock, ids of experiments, and the measured-cost cache.

The engine writes these files and reporting reads them, so this layer knows nothing
of training, reporting or torch: ``kdbench status`` and ``kdbench report`` load it
without loading a model.
"""
