"""What the quality reports share: how a number is printed, and the NFE at which a method
first reaches a target Frechet distance."""

from __future__ import annotations


def number(v: float) -> str:
    """A report's number: one decimal from 100 up, else three significant digits."""
    return f'{v:.1f}' if abs(v) >= 100 else f'{v:.3g}'


def nfe_to_target(rows: list[dict], target: float, key: str, margin_se: float
                  ) -> dict[str, int | float | None]:
    """Per ``row[key]`` (in the rows' order), the smallest ``row['nfe']`` whose Frechet
    distance counts as at or under ``target``: FD + margin_se * SE <= target, with SE the
    row's ``frechet_distance_se`` (0 for a population estimate; read only when margin_se is
    not 0). ``margin_se = 2`` asks a sampled FD to be under the target by two standard
    errors. None where no row of that key does."""
    out: dict[str, int | float | None] = {}
    for r in rows:
        out.setdefault(r[key], None)
        fd = r['frechet_distance']
        if margin_se:
            fd = fd + margin_se * r['frechet_distance_se']
        if fd <= target:
            best = out[r[key]]
            out[r[key]] = r['nfe'] if best is None else min(best, r['nfe'])
    return out
