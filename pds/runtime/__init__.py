"""Runtime: configuration errors, the device mesh, multi-process jobs, progress bars, the
Python garbage collector's settings.

Imports nothing from other ``pds`` packages."""
