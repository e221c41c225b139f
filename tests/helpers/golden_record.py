"""Record the golden outputs (tests/golden/golden.npz): ``python -m tests.helpers.golden_record``
from the repository root.

Run it only to accept a deliberate change, and say why in the commit message: the golden test
exists to prove that refactors change nothing. Against the existing file it reports what
changed and refuses to write when any sample, image or parameter array changed (a new report
field changes only the ``metrics`` entries) unless ``--accept-changed-arrays`` is given.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

from tests.helpers.golden_cases import groups, run_group
from tests.helpers.paths import ROOT

GOLDEN = os.path.join(ROOT, 'tests', 'golden', 'golden.npz')
REPORTS = ('|metrics', '|train_metrics')


def changes(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """(changed arrays, changed reports with the keys they gained, lost or changed)."""
    arrays, reports = [], []
    for k in sorted(set(old) | set(new)):
        if k == 'fingerprint' or (k in old and k in new and np.array_equal(old[k], new[k])):
            continue
        if not k.endswith(REPORTS) or k not in old or k not in new:
            arrays.append(k)
            continue
        a, b = json.loads(bytes(old[k])), json.loads(bytes(new[k]))
        a, b = (a[0], b[0]) if isinstance(a, list) else (a, b)
        diff = sorted({f'+{x}' for x in set(b) - set(a)} | {f'-{x}' for x in set(a) - set(b)}
                      | {f'~{x}' for x in set(a) & set(b) if a[x] != b[x]})
        reports.append(f'{k}: {" ".join(diff)}')
    return arrays, reports


def main() -> None:
    arrays = {}
    with tempfile.TemporaryDirectory() as tmp:
        for g in range(len(groups())):
            out = os.path.join(tmp, f'group_{g}.npz')
            res = run_group(out, g)
            if res.returncode != 0:
                sys.exit(f'group {g} failed:\n{res.stderr[-4000:]}')
            with np.load(out) as data:
                arrays.update({k: data[k] for k in data.files})
            print(f'recorded group {g}', flush=True)
    if os.path.exists(GOLDEN):
        with np.load(GOLDEN) as data:
            old = {k: data[k] for k in data.files}
        changed, reports = changes(old, arrays)
        print(f'{len(reports)} reports changed:', *reports[:10], sep='\n  ')
        print(f'{len(changed)} arrays changed:', *changed[:20], sep='\n  ')
        if changed and '--accept-changed-arrays' not in sys.argv:
            sys.exit('arrays changed: not written (pass --accept-changed-arrays to accept)')
    np.savez_compressed(GOLDEN, **arrays)
    print(f'{GOLDEN}: {len(arrays)} arrays, {os.path.getsize(GOLDEN)} bytes')


if __name__ == '__main__':
    main()
