"""Runtime: configuration errors, the device mesh, multi-process jobs, progress bars.

Imports nothing from other ``pds`` packages."""
