"""Writing files and folders so that no reader, concurrent writer or kill sees half of one.

Standard library only, so light command-line tools (``parse_test_res.py``) can use it without
importing PyTorch.
"""
import contextlib
import os
import os.path as osp
import shutil
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """A private temporary file beside ``path`` for the block to write; once the block ends
    without error it is flushed to disk and renamed over ``path``, so a kill or a concurrent
    writer never leaves half a file there. On an error it is removed and ``path`` is kept.

    The temporary name is ``<name>.<random>``: its stem is ``path``'s own name, which
    ``torch.save`` writes into the archive, so the bytes do not depend on the random part.
    """
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=osp.basename(path) + ".", dir=directory)
    os.fchmod(handle, 0o644)  # readable by others, as a plainly opened file would be
    os.close(handle)
    try:
        yield staging
        handle = os.open(staging, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(staging, path)
    finally:
        if osp.exists(staging):
            os.remove(staging)


@contextlib.contextmanager
def atomic_directory(path: str, replace: bool = False) -> Iterator[str]:
    """A private temporary folder beside ``path`` for the block to fill; once the block ends
    without error it is renamed to ``path``, so no reader sees half of it. With ``replace`` an
    older folder at ``path`` is removed just before; if another process put a folder there
    meanwhile, that one is kept and this one dropped."""
    parent = osp.dirname(osp.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{osp.basename(path)}-", dir=parent)
    try:
        yield staging
        if replace and osp.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.rename(staging, path)
        except OSError:
            if not osp.isdir(path):
                raise
    finally:
        if osp.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
