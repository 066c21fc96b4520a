"""A TensorBoard event file written without TensorFlow.

An event file is a sequence of records, each an `Event` protocol buffer (a step, a wall time
and a `Summary` of tagged values), framed as TensorFlow's TFRecord format: the length, a
checksum of the length, the bytes, a checksum of the bytes. TensorBoard ships the protos and
the framing (`RecordWriter`), so writing needs neither TensorFlow nor a thread: the Keras
demo writes its event file with this on every backend, and TensorBoard reads it as it reads
one of `tf.summary`.
"""

import itertools
import os
import socket
import time
from pathlib import Path

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.summary.writer.record_writer import RecordWriter

_files = itertools.count()  # two files opened in one second get different names


class EventFile:
    """A new event file in `logdir` (TensorBoard's run), written as `write` is called.

    `enabled` False (a worker that is not the chief): nothing is written.
    """

    def __init__(self, logdir, enabled=True):
        self._records = None
        if enabled:
            Path(logdir).mkdir(parents=True, exist_ok=True)
            name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                    f"{os.getpid()}.{next(_files)}")
            self._records = RecordWriter(open(Path(logdir) / name, "wb"))
            self._add(Event(wall_time=time.time(), file_version="brain.Event:2"))

    @property
    def enabled(self):
        return self._records is not None

    def write(self, summary, step):
        """One `Summary` proto (common.outputs.tensorboard builds them) at training step `step`."""
        self._add(Event(wall_time=time.time(), step=int(step), summary=summary))

    def _add(self, event):
        if self._records is not None:
            self._records.write(event.SerializeToString())

    def flush(self):
        if self._records is not None:
            self._records.flush()

    def close(self):
        if self._records is not None and not self._records.closed:
            self._records.close()
