"""Training summaries: the metrics file, TensorBoard event files (without TensorFlow), failures."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from pds.storage import summaries
from pds.storage.summaries import METRICS_FILE, Summaries, truncate_metrics
from tests.helpers.paths import ROOT, jax_env

WRITES = [(1, {'loss': 0.1, 'steps_per_sec': 12.5}),
          (2, {'loss': 0.07}),
          (4, {'loss': 1e-3, 'eval_loss': 0.3333333333333333, 'steps_per_sec': 9.0})]


def _scalars(logdir):
    """{tag: [(step, value)]} as TensorBoard reads ``logdir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logdir, size_guidance={'scalars': 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()['scalars']}


def _expected(writes):
    out = {}
    for step, scalars in writes:
        for tag, value in scalars.items():
            out.setdefault(tag, []).append((step, float(np.float32(value))))
    return out


def _lines(path):
    with open(path) as f:
        return f.read().splitlines()


def _warnings(monkeypatch):
    calls = []
    monkeypatch.setattr(summaries.logging, 'warning', lambda *a: calls.append(a[0] % a[1:]))
    return calls


@pytest.mark.slow
def test_writes_jsonl_and_tensorboard_scalars(tmp_path):
    s = Summaries(str(tmp_path), tensorboard=True)
    assert s.enabled and s.path == os.path.join(str(tmp_path), METRICS_FILE)
    for step, scalars in WRITES:
        s.write(step, **scalars)
    # Flushed after every write: readable before close.
    assert _scalars(str(tmp_path / 'tensorboard')) == _expected(WRITES)
    s.close()
    s.close()

    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{'step': k, **v} for k, v in WRITES]
    assert lines[0] == '{"loss": 0.1, "step": 1, "steps_per_sec": 12.5}'  # sorted keys

    files = os.listdir(tmp_path / 'tensorboard')
    assert len(files) == 1 and files[0].startswith('events.out.tfevents.')
    assert _scalars(str(tmp_path / 'tensorboard')) == _expected(WRITES)


def test_resumed_writer_appends(tmp_path):
    first = Summaries(str(tmp_path), tensorboard=True)
    first.write(1, loss=2.0)
    first.close()
    second = Summaries(str(tmp_path), tensorboard=True)
    second.write(2, loss=3.0)
    second.close()
    assert len(os.listdir(tmp_path / 'tensorboard')) == 2
    assert _scalars(str(tmp_path / 'tensorboard')) == {'loss': [(1, 2.0), (2, 3.0)]}
    assert [json.loads(x)['step'] for x in (tmp_path / METRICS_FILE).read_text().splitlines()] \
        == [1, 2]


def test_tensorboard_off_and_other_processes(tmp_path, monkeypatch):
    off = tmp_path / 'off'
    off.mkdir()
    s = Summaries(str(off), tensorboard=False)
    s.write(1, loss=1.0)
    s.close()
    assert os.listdir(off) == [METRICS_FILE]

    other = tmp_path / 'other'
    other.mkdir()
    monkeypatch.setattr(jax, 'process_index', lambda: 1)
    s = Summaries(str(other), tensorboard=True)
    assert not s.enabled
    s.write(1, loss=1.0)
    s.close()
    assert os.listdir(other) == []


def test_truncate_metrics_drops_later_lines(tmp_path):
    s = Summaries(str(tmp_path), tensorboard=False)
    for step in (1, 2, 3, 4):
        s.write(step, loss=float(step))
    truncate_metrics(s.path, 2)
    assert [json.loads(x) for x in _lines(s.path)] == [{'step': 1, 'loss': 1.0},
                                                     {'step': 2, 'loss': 2.0}]
    s.write(3, loss=30.0)
    assert [json.loads(x)['loss'] for x in _lines(s.path)] == [1.0, 2.0, 30.0]
    truncate_metrics(str(tmp_path / 'missing.jsonl'), 0)  # no file: nothing to do
    assert not (tmp_path / 'missing.jsonl').exists()


def test_logdir_that_cannot_be_created_warns_once(tmp_path, monkeypatch):
    warnings = _warnings(monkeypatch)
    (tmp_path / 'tensorboard').write_text('a file in the way')
    s = Summaries(str(tmp_path), tensorboard=True)
    for step, scalars in WRITES:
        s.write(step, **scalars)
    s.close()
    assert len(warnings) == 1 and 'TensorBoard summaries disabled' in warnings[0]
    assert [json.loads(x) for x in _lines(s.path)] == [{'step': k, **v} for k, v in WRITES]
    assert (tmp_path / 'tensorboard').read_text() == 'a file in the way'


def test_failing_event_write_warns_once_and_keeps_the_jsonl(tmp_path, monkeypatch):
    warnings = _warnings(monkeypatch)
    s = Summaries(str(tmp_path), tensorboard=True)
    s.write(1, loss=1.0)
    s.tb._records.close()  # the event file fails under the writer
    s.write(2, loss=2.0)
    s.write(3, loss=3.0)
    s.close()
    assert len(warnings) == 1 and 'TensorBoard summaries disabled' in warnings[0]
    assert s.tb is None
    assert [json.loads(x)['step'] for x in _lines(s.path)] == [1, 2, 3]
    assert _scalars(str(tmp_path / 'tensorboard')) == {'loss': [(1, 1.0)]}


@pytest.mark.slow
def test_writing_events_does_not_import_tensorflow(tmp_path):
    # A fresh interpreter: reading events back (above) may import TensorFlow in this one.
    code = textwrap.dedent(f"""
        import importlib.util, os, sys
        from pds.storage.summaries import Summaries
        s = Summaries({str(tmp_path)!r}, tensorboard=True)
        for step in range(1, 4):
            s.write(step, loss=0.5 * step, lr=1e-4)
        s.close()
        assert s.tb is None
        [name] = os.listdir(os.path.join({str(tmp_path)!r}, 'tensorboard'))
        assert name.startswith('events.out.tfevents.'), name
        print('tf_installed', importlib.util.find_spec('tensorflow') is not None)
        print('tf_imported', 'tensorflow' in sys.modules)
    """)
    env = jax_env()
    out = subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'tf_imported False' in out.stdout, out.stdout
    assert _scalars(str(tmp_path / 'tensorboard')) == {
        'loss': [(1, 0.5), (2, 1.0), (3, 1.5)],
        'lr': [(k, float(np.float32(1e-4))) for k in (1, 2, 3)]}
