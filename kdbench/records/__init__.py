"""What a run leaves on disk: the record schema, the record store and its atomic
writes, the results-folder lock, ids of experiments, and the measured-cost cache.

The engine writes these files and reporting reads them, so this layer knows nothing
of training, reporting or torch: ``kdbench status`` and ``kdbench report`` load it
without loading a model.
"""

from kdbench.core.deprecation import forward

# ``kdbench.records`` was one module, the record store, in 0.1.0; its names still
# work from here, with a warning, until 0.3.0.
__getattr__ = forward(
    "kdbench.records",
    "kdbench.records.store",
    ["BadRecord", "QUARANTINE", "RecordStore", "atomic_path", "read_record",
     "temporary_maker", "write_json_atomic", "write_text_atomic"],
)  # fmt: skip
