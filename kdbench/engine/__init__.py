"""Running a benchmark: the plan (matrix of cells), teachers, the cell job and its
lockstep groups, the training loop and its policies (optimizer, precision, random
state), measurement of latency and size, the logit cache, folding and checkpoints.

This is where torch lives. The engine imports the core and the records, never the
CLI or reporting: whoever runs it (the CLI, an executor's worker) passes in the
progress display and turns the records into tables afterwards.
"""
