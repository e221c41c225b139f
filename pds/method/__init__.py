"""The method: forward SDEs, the score-function view of a network, the PDS preconditioner
(M = C D, applied with FFTs) and the masks it is built from.

May import ``pds.runtime`` and ``pds.storage``."""
