"""Training scalars, written by process 0 only.

- ``<workdir>/train_metrics.jsonl``: one JSON object per line, ``{"step": ..., <name>: ...}``.
- ``<workdir>/tensorboard/events.out.tfevents.*``: the same scalars as TensorBoard events.

The event files are written with the ``tensorboard`` package's protos and TFRecord framing
(:class:`tensorboard.summary.writer.record_writer.RecordWriter`) on a plain Python file, so
TensorFlow is never imported. (``EventFileWriter`` is not used: it goes through
``tensorboard.compat.tf``, which imports TensorFlow whenever it is installed.) A failure to
write TensorBoard events logs one warning and turns them off; training never stops for it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import time
from typing import Any

import jax
from absl import logging

from pds.storage import outputs

METRICS_FILE = 'train_metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'

_file_ids = itertools.count()


class _EventWriter:
    """Appends scalar ``Event`` records to a new event file in ``logdir`` (no TensorFlow)."""

    def __init__(self, logdir: str):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        os.makedirs(logdir, exist_ok=True)
        name = (f'events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}'
                f'.{os.getpid()}.{next(_file_ids)}')
        self.path = os.path.join(logdir, name)
        self._records = RecordWriter(open(self.path, 'wb'))  # noqa: SIM115 (closed in close())
        try:
            self._add(event_pb2.Event(
                wall_time=time.time(), file_version='brain.Event:2',
                source_metadata=event_pb2.SourceMetadata(writer='pds.storage.summaries')))
        except BaseException:
            self.close()
            raise

    def _add(self, event: Any) -> None:
        self._records.write(event.SerializeToString())
        self._records.flush()

    def scalars(self, step: int, scalars: dict[str, float]) -> None:
        values = [self._summary_pb2.Summary.Value(tag=name, simple_value=float(value))
                  for name, value in scalars.items()]
        self._add(self._event_pb2.Event(wall_time=time.time(), step=int(step),
                                        summary=self._summary_pb2.Summary(value=values)))

    def close(self) -> None:
        if not self._records.closed:
            self._records.close()


class Summaries:
    """Scalars to ``train_metrics.jsonl`` and, with ``tensorboard``, TensorBoard; process 0 only."""

    def __init__(self, workdir: str, tensorboard: bool):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, METRICS_FILE)
        self.tb: _EventWriter | None = None
        if self.enabled and tensorboard:
            try:
                self.tb = _EventWriter(os.path.join(workdir, TENSORBOARD_DIR))
            except Exception as err:  # optional: never stop training for a summary
                _disabled(err)

    def write(self, step: int, **scalars: float) -> None:
        """Append ``{'step': step, **scalars}`` to the metrics file and the event file."""
        if not self.enabled:
            return
        with open(self.path, 'a') as f:
            f.write(json.dumps({'step': step, **scalars}, sort_keys=True) + '\n')
        if self.tb is not None:
            try:
                self.tb.scalars(step, scalars)
            except Exception as err:  # optional: never stop training for a summary
                _disabled(err)
                tb, self.tb = self.tb, None
                with contextlib.suppress(Exception):  # already warned once
                    tb.close()

    def close(self) -> None:
        """Close the event file (later writes go to the metrics file only)."""
        tb, self.tb = self.tb, None
        if tb is not None:
            try:
                tb.close()
            except Exception as err:
                logging.warning('Closing the TensorBoard event file failed (%s: %s)',
                                type(err).__name__, err)


def _disabled(err: Exception) -> None:
    logging.warning('TensorBoard summaries disabled (%s: %s)', type(err).__name__, err)


def truncate_metrics(path: str, step: int) -> None:
    """Drop metric lines after ``step`` (a resumed run rewrites them)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        keep = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
    outputs.write_text(path, ''.join(keep))
