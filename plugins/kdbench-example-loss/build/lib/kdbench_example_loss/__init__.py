"""An example kdbench loss plugin: logit regression (Ba & Caruana 2014)."""
