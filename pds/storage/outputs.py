"""Output files: every file appears whole or not at all (write to a temporary name in the
same folder, then rename), and a run refuses to replace outputs of an earlier run unless told."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile

import numpy as np
from PIL import Image

from pds.runtime.errors import ConfigError


def prepare_workdir(path: str) -> str:
    """Create ``path`` if needed and check that files can be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix='.probe'):
            pass
    except OSError as err:
        raise ConfigError('--workdir', path, f'a writable directory ({err.strerror})') from None
    return path


def claim_outputs(paths: list[str], overwrite: bool) -> None:
    """Refuse to run when any output already exists, unless ``overwrite``."""
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not overwrite:
        raise ConfigError('--workdir', os.path.dirname(existing[0]) or '.',
                          f'a directory without earlier outputs ({existing[0]} exists; pass '
                          '--overwrite to replace them)')


def write_bytes(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.', prefix='.tmp-')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + '\n').encode())


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def write_npz(path: str, **arrays) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def image_grid(images: np.ndarray, max_images: int = 64) -> np.ndarray:
    """Tile uint8 images (N, H, W, C) into one (rows H, cols W, C) image with 2-pixel gaps."""
    images = images[:max_images]
    n, h, w, c = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = 2
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h,
             pad + q * (w + pad): pad + q * (w + pad) + w] = img
    return grid


def write_png(path: str, image: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format='PNG')
    write_bytes(path, buf.getvalue())
