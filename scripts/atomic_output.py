"""Shared by the scripts that write a user's file (export_onnx.py, quantize_int8.py): the file
appears whole or not at all, as tltrain's own writes (core/fs.h write_atomically)."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_output(out, suffix):
    """A temporary path beside OUT to write; renamed over OUT when the block ends without an
    exception, removed however it ends."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".", suffix=suffix,
                               dir=os.path.dirname(os.path.abspath(out)))
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; the result is an ordinary file
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
