"""The download / verify / cache layer (``evaluation.fetch``) against a local HTTP server on
127.0.0.1, and ``python -m evaluation.inception_weights --fetch``'s failure lines."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from evaluation import fetch
from evaluation import inception_weights as iw

BODY = bytes(range(256)) * 40 + b'release file'  # 10 KiB and a tail: several reads' worth
DIGEST = hashlib.sha256(BODY).hexdigest()


class _Server:
    """A threaded http.server on 127.0.0.1 (port 0): ``files`` by path, 404 for the rest,
    ``/short`` announces more bytes than it sends. ``requests`` lists the paths asked for."""

    def __init__(self):
        self.files = {'/w.pth': BODY}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path == '/short':
                    self.send_response(200)
                    self.send_header('Content-Length', str(len(BODY)))
                    self.end_headers()
                    self.wfile.write(BODY[:100])
                    self.close_connection = True
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, 'Not Found')
                    return
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.base = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _one_line(err) -> str:
    msg = str(err.value)
    assert '\n' not in msg
    return msg


def test_fetch_verifies_and_caches(server, tmp_path):
    dest = tmp_path / 'cache' / 'sub' / 'w-0123abcd.pth'
    got = fetch.fetch(f'{server.base}/w.pth', dest, DIGEST[:8])
    assert got == fetch.Fetched(dest, DIGEST, downloaded=True)
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no temp file left
    assert server.requests == ['/w.pth']
    # the second call is served from the cache: no request reaches the server
    again = fetch.fetch(f'{server.base}/w.pth', dest, DIGEST)
    assert again == fetch.Fetched(dest, DIGEST, downloaded=False)
    assert server.requests == ['/w.pth']


def test_wrong_digest_keeps_nothing(server, tmp_path):
    dest = tmp_path / 'w.pth'
    wrong = ('0' if DIGEST[0] != '0' else '1') + DIGEST[1:8]
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch(f'{server.base}/w.pth', dest, wrong)
    msg = _one_line(err)
    assert f'{server.base}/w.pth' in msg and DIGEST[:16] in msg and wrong in msg
    assert list(tmp_path.iterdir()) == []


def test_http_404_one_line(server, tmp_path):
    dest = tmp_path / 'w.pth'
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch(f'{server.base}/missing.pth', dest, DIGEST)
    msg = _one_line(err)
    assert f'{server.base}/missing.pth' in msg and 'HTTP 404' in msg and str(dest) in msg
    assert list(tmp_path.iterdir()) == []


def test_truncated_body_keeps_nothing(server, tmp_path):
    dest = tmp_path / 'w.pth'
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch(f'{server.base}/short', dest, DIGEST)
    assert f'{server.base}/short' in _one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_size_limit_keeps_nothing(server, tmp_path):
    with pytest.raises(fetch.FetchError, match='more than the 1000 allowed'):
        fetch.fetch(f'{server.base}/w.pth', tmp_path / 'w.pth', DIGEST, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_no_network_says_where_to_place_the_file(tmp_path):
    with socket.socket() as s:  # a port on 127.0.0.1 that nothing listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    dest = tmp_path / 'cache' / 'w.pth'
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch(f'http://127.0.0.1:{port}/w.pth', dest, DIGEST, timeout=5)
    msg = _one_line(err)
    assert f'127.0.0.1:{port}/w.pth' in msg and 'by hand' in msg and str(dest) in msg
    assert list(dest.parent.iterdir()) == []


def test_file_placed_by_hand_is_verified(tmp_path):
    dest = tmp_path / 'w.pth'
    dest.write_bytes(BODY)
    # no server at all: an unreachable URL proves the cached copy is used without network
    got = fetch.fetch('http://127.0.0.1:9/w.pth', dest, DIGEST[:8])
    assert got == fetch.Fetched(dest, DIGEST, downloaded=False)
    dest.write_bytes(BODY[:-1])
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch('http://127.0.0.1:9/w.pth', dest, DIGEST[:8])
    assert str(dest) in _one_line(err) and 'delete it' in str(err.value)
    assert dest.read_bytes() == BODY[:-1]  # a file placed by hand is never overwritten


class _Stream:
    """A urlopen response without Content-Length: ``blocks`` in turn, then ``end`` (an
    exception to raise, or None for the end of the body)."""

    def __init__(self, blocks, end=None):
        self.blocks, self.end, self.headers = list(blocks), end, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n):
        if self.blocks:
            return self.blocks.pop(0)
        if self.end is not None:
            raise self.end
        return b''


def test_interrupted_download_keeps_nothing(tmp_path):
    """Ctrl-C in the middle of the body: the temporary file goes, the interrupt goes on."""
    opener = lambda url, timeout: _Stream([BODY[:100]], KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch('http://127.0.0.1:9/w.pth', tmp_path / 'w.pth', DIGEST, urlopen=opener)
    assert list(tmp_path.iterdir()) == []


def test_unannounced_size_limit(tmp_path):
    opener = lambda url, timeout: _Stream([BODY[:600], BODY[600:1200]])
    with pytest.raises(fetch.FetchError, match='more than 1000 bytes'):
        fetch.fetch('http://127.0.0.1:9/w.pth', tmp_path / 'w.pth', DIGEST, max_bytes=1000,
                    urlopen=opener)
    assert list(tmp_path.iterdir()) == []
    opener = lambda url, timeout: _Stream([BODY[:600], BODY[600:]])
    got = fetch.fetch('http://127.0.0.1:9/w.pth', tmp_path / 'w.pth', DIGEST, urlopen=opener)
    assert got.downloaded and (tmp_path / 'w.pth').read_bytes() == BODY


def test_destination_directory_refused(server, tmp_path):
    (tmp_path / 'w.pth').mkdir()
    with pytest.raises(fetch.FetchError, match='is not a file'):
        fetch.fetch(f'{server.base}/w.pth', tmp_path / 'w.pth', DIGEST)
    assert server.requests == [] and [p.name for p in tmp_path.iterdir()] == ['w.pth']


@pytest.mark.parametrize('url', ['file:///etc/passwd', 'ftp://127.0.0.1/w.pth'])
def test_only_http_urls(tmp_path, url):
    with pytest.raises(fetch.FetchError, match='only http and https'):
        fetch.fetch(url, tmp_path / 'w.pth', DIGEST)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('digest', ['6726825', 'xyz12345', '0' * 65, ''])
def test_expected_digest_checked(tmp_path, digest):
    with pytest.raises(ValueError, match='8 to 64 hex digits'):
        fetch.fetch('http://127.0.0.1:9/w.pth', tmp_path / 'w.pth', digest)


def test_default_cache_dir():
    assert fetch.default_cache_dir({'XDG_CACHE_HOME': '/x/c'}) == Path('/x/c/pds')
    assert fetch.default_cache_dir({'XDG_CACHE_HOME': ''}) == Path.home() / '.cache' / 'pds'


def test_release_defaults():
    assert iw.SOURCE_URL.endswith('/' + iw.SOURCE_NAME)
    assert iw.SOURCE_NAME.endswith(f'-{iw.SOURCE_SHA256_PREFIX}.pth')


def test_cli_fetch_failures_one_line(server, tmp_path, capsys):
    """--fetch of a file that is not the release: exit 1, one line, nothing in the cache and
    no output; a 404 likewise."""
    cache, out = tmp_path / 'cache', tmp_path / 'inception_fid.npz'
    for path, what in (('/w.pth', 'not starting with 6726825d'), ('/gone', 'HTTP 404')):
        rc = iw.main(['--fetch', '--url', server.base + path, '--cache-dir', str(cache),
                      '--out', str(out)])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and '\n' not in err and err.startswith('error: ') and what in err
        assert server.base + path in err
        assert not out.exists() and list(cache.iterdir()) == []


def test_cli_uses_cache_without_network(tmp_path, capsys, monkeypatch):
    """A release file placed by hand in the cache is used (no network: the URL is closed),
    verified, and handed to the conversion."""
    cache = tmp_path / 'cache'
    cache.mkdir()
    (cache / iw.SOURCE_NAME).write_bytes(BODY)
    monkeypatch.setattr(iw, 'SOURCE_SHA256_PREFIX', DIGEST[:8])
    seen = []
    monkeypatch.setattr(iw, 'convert', lambda src, out, verify_source: seen.append(src) or 'd')
    rc = iw.main(['--fetch', '--url', 'http://127.0.0.1:9/x.pth', '--cache-dir', str(cache),
                  '--out', str(tmp_path / 'o.npz')])
    assert rc == 0 and seen == [cache / iw.SOURCE_NAME]
    assert f'using cached {cache / iw.SOURCE_NAME} (sha256 {DIGEST})' in capsys.readouterr().out


def test_missing_weights_message_names_fetch(tmp_path):
    path = tmp_path / 'inception_fid.npz'
    msg = iw.not_found_message(path)
    assert '\n' not in msg and iw.fetch_command(path) in msg and iw.convert_command(path) in msg
