"""Readers that go away: a pipe closed mid-run (`| head`, `| grep -m`), a closed descriptor, a
terminal that hangs up. None of them stops a promotion or a rollback, changes an exit code, or
makes a command that only reads say more than its answer."""

from __future__ import annotations

import errno
import os

import pytest

from releaser.streams import Guarded


def _pipe_stream():
    """A text stream on a real pipe, and the pipe's read end."""
    read_end, write_end = os.pipe()
    return os.fdopen(write_end, "w", encoding="utf-8"), read_end


def test_a_stream_whose_reader_went_away_drops_what_it_is_given():
    stream, read_end = _pipe_stream()
    guarded = Guarded(stream)
    guarded.write("seen\n")
    guarded.flush()
    assert os.read(read_end, 100) == b"seen\n"
    os.close(read_end)
    guarded.write("into a closed pipe\n")
    guarded.flush()  # EPIPE: dropped, and the descriptor now leads nowhere
    assert guarded.gone and not guarded.isatty()
    assert guarded.write("and more\n") == len("and more\n")
    stream.write("what the stream still held\n")
    stream.close()  # the buffered rest flushes into /dev/null instead of raising


def test_other_errors_and_bytes_still_raise():
    class Full:
        def write(self, _text):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as raised:
        Guarded(Full()).write("x")  # type: ignore[arg-type]
    assert raised.value.errno == errno.ENOSPC
    stream, read_end = _pipe_stream()
    with pytest.raises(TypeError):  # as a text stream: how click tells text streams from binary ones
        Guarded(stream).write(b"x")  # type: ignore[arg-type]
    stream.close()
    os.close(read_end)
