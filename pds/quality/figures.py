"""The reports' figures: matplotlib without a display, and a figure written whole."""

from __future__ import annotations

import io

import numpy as np

from pds.storage import outputs


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str) -> None:
    """Write ``fig`` as a PNG at ``path`` in one piece (:mod:`pds.storage.outputs`), close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    pyplot().close(fig)
    outputs.write_bytes(path, buf.getvalue())


def fd_curve(rows: list[dict], key: str, label: str) -> tuple[np.ndarray, ...]:
    """(nfe, frechet_distance, frechet_distance_se) of the rows whose ``key`` is ``label``,
    in increasing NFE."""
    pts = sorted((r['nfe'], r['frechet_distance'], r['frechet_distance_se'])
                 for r in rows if r[key] == label)
    return tuple(np.asarray(v, np.float64) for v in zip(*pts, strict=True))
