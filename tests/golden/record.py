"""Record the golden outputs: ``python tests/golden/record.py`` (from the repository root).

Run it only to accept a deliberate change of behaviour, and say why in the commit message:
the golden test exists to prove that refactors change nothing.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.golden.cases import groups, run_group

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden.npz')


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
    np.savez_compressed(GOLDEN, **arrays)
    print(f'{GOLDEN}: {len(arrays)} arrays, {os.path.getsize(GOLDEN)} bytes')


if __name__ == '__main__':
    main()
