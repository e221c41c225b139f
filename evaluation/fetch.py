"""Download a release file once into a cache, verified by its SHA-256.

``fetch(url, dest, sha256)`` returns ``dest`` when it is already there and its SHA-256 starts
with ``sha256`` (no network). Otherwise it streams ``url`` (http or https, ``urllib``) into a
temporary file in ``dest``'s directory while hashing it, and renames that file onto ``dest``
(``os.replace``, atomic on one file system) only when the digest agrees; on any failure the
temporary file is removed, so ``dest`` is either absent or a verified copy.

``sha256`` may be the full hex digest or a leading part of it, as in torch.hub's file names
``name-<first hex digits of the sha256>.ext``. Every failure is a :class:`FetchError` with a
one-line message naming the URL, what went wrong and where to place the file by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

MAX_BYTES = 1 << 30  # refuse larger downloads (the FID Inception release file is 91 MB)
TIMEOUT_S = 60.0  # per connect / read
_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download that did not produce a verified file (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A verified file: its path, full SHA-256, and whether this call downloaded it."""

    path: Path
    sha256: str
    downloaded: bool


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/pds``, or ``~/.cache/pds`` when that is unset or empty."""
    environ = os.environ if environ is None else environ
    base = environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'pds'


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(_CHUNK), b''):
            h.update(block)
    return h.hexdigest()


def check_sha256(sha256: str) -> str:
    """``sha256`` lower-cased; ValueError unless it is 8 to 64 hex digits."""
    if not isinstance(sha256, str) or not re.fullmatch(r'[0-9a-fA-F]{8,64}', sha256):
        raise ValueError(f'expected SHA-256 {sha256!r}: allowed 8 to 64 hex digits '
                         '(the full digest or its leading part)')
    return sha256.lower()


def fetch(url: str, dest: str | os.PathLike, sha256: str, *, timeout: float = TIMEOUT_S,
          max_bytes: int = MAX_BYTES,
          urlopen: Callable[..., object] = urllib.request.urlopen) -> Fetched:
    """``dest`` verified: from the cache if there, else downloaded from ``url`` (see module).

    A cached ``dest`` whose digest disagrees is refused (FetchError), never overwritten: it
    may be a file placed by hand.
    """
    sha256 = check_sha256(sha256)
    dest = Path(dest)
    hint = f'place the file by hand at {dest} (its SHA-256 starts with {sha256[:8]}) and re-run'
    if dest.exists() and not dest.is_file():
        raise FetchError(f'{dest} is not a file: remove it, or fetch into another cache '
                         'directory')
    if dest.is_file():
        try:
            digest = file_sha256(dest)
        except OSError as err:
            raise FetchError(f'cannot read the cached {dest} ({_describe(err)})') from None
        if not digest.startswith(sha256):
            raise FetchError(f'cached {dest} has SHA-256 {digest[:16]}..., not starting with '
                             f'{sha256}: delete it and fetch again, or {hint}')
        return Fetched(dest, digest, downloaded=False)
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ('http', 'https'):
        raise FetchError(f'cannot download {url!r}: only http and https URLs are allowed; '
                         f'or {hint}')
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f'.{dest.name}.', suffix='.part')
    except OSError as err:
        raise FetchError(f'cannot write to the cache directory {dest.parent} '
                         f'({_describe(err)})') from None
    try:
        with os.fdopen(fd, 'wb') as out:
            digest = _download(url, out, timeout, max_bytes, urlopen, hint, dest.parent)
            if not digest.startswith(sha256):
                raise FetchError(f'{url}: the downloaded file has SHA-256 {digest[:16]}..., '
                                 f'not starting with {sha256}; nothing was kept (a changed or '
                                 f'corrupted release file?); or {hint}')
            try:
                out.flush()
                os.fsync(out.fileno())
                os.replace(tmp, dest)
            except OSError as err:
                raise FetchError(f'cannot store the download in {dest} ({_describe(err)})'
                                 ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Fetched(dest, digest, downloaded=True)


def _download(url: str, out, timeout: float, max_bytes: int,
              urlopen: Callable[..., object], hint: str, where: Path) -> str:
    """Stream ``url`` into the open file ``out`` (in the directory ``where``); return the
    hex SHA-256 of the bytes."""
    h = hashlib.sha256()
    size = 0
    try:
        with urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get('Content-Length')
            length = int(length) if length and length.isdigit() else None
            if length is not None and length > max_bytes:
                raise FetchError(f'{url}: the server announces {length} bytes, more than the '
                                 f'{max_bytes} allowed; nothing was kept')
            while block := resp.read(_CHUNK):
                size += len(block)
                if size > max_bytes:
                    raise FetchError(f'{url}: more than {max_bytes} bytes, refused; nothing '
                                     'was kept')
                h.update(block)
                try:
                    out.write(block)
                except OSError as err:  # a full disk, a quota
                    raise FetchError(f'cannot write the download of {url} into {where} '
                                     f'({_describe(err)}); nothing was kept') from None
    except urllib.error.HTTPError as err:
        raise FetchError(f'download of {url} failed: HTTP {err.code} {err.reason}; {hint}'
                         ) from None
    except urllib.error.URLError as err:  # DNS, refused connection, TLS: no usable network
        raise FetchError(f'cannot download {url} ({_describe(err.reason)}): without network, '
                         f'download it elsewhere and {hint}') from None
    except (OSError, http.client.HTTPException) as err:  # timeouts, resets, short bodies
        raise FetchError(f'download of {url} broke off after {size} bytes ({_describe(err)}); '
                         f'nothing was kept; retry, or {hint}') from None
    if length is not None and size != length:
        raise FetchError(f'download of {url} is incomplete ({size} of {length} bytes); '
                         f'nothing was kept; retry, or {hint}')
    return h.hexdigest()


def _describe(err: object) -> str:
    """An exception (or URLError reason) as ``Type: text`` on one line."""
    text = ' '.join(str(err).split())
    return f'{type(err).__name__}: {text}' if isinstance(err, BaseException) else text
