"""Data: input pipelines (exact field samples, .npz files, image folders, TFDS, TFRecords).

May import ``pds.runtime``, ``pds.storage``, ``pds.method`` and ``pds.analytic``."""
