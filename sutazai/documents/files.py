"""Uploaded originals on disk: `<documents_dir>/<owner uuid>/<document uuid>`.

A file is written to a temporary name in the same folder, flushed to disk, then renamed
over its final name, so a reader never sees half a file and a crash leaves no partial
original. Names are UUIDs only: nothing the client sent becomes a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from pathlib import Path

from sutazai.errors import NotFound


class DocumentFiles:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> Path:
        return self.root / str(uuid.UUID(str(owner_id))) / str(uuid.UUID(str(document_id)))

    async def write(self, owner_id: uuid.UUID, document_id: uuid.UUID, data: bytes) -> Path:
        return await asyncio.to_thread(self.write_sync, owner_id, document_id, data)

    async def read(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> bytes:
        return await asyncio.to_thread(self.read_sync, owner_id, document_id)

    async def delete(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        return await asyncio.to_thread(self.delete_sync, owner_id, document_id)

    def write_sync(self, owner_id: uuid.UUID, document_id: uuid.UUID, data: bytes) -> Path:
        """Store `data` atomically (temp file + fsync + rename); returns the path."""
        path = self.path_of(owner_id, document_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_dir(path.parent)
        return path

    def read_sync(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> bytes:
        """The original's bytes; `NotFound` when the file is gone."""
        try:
            return self.path_of(owner_id, document_id).read_bytes()
        except FileNotFoundError:
            raise NotFound("the document's file is missing", code="document_file_missing") from None

    def delete_sync(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        """Remove the original; False when it was not there. (The owner's folder stays: an upload
        may be writing into it right now.)"""
        try:
            self.path_of(owner_id, document_id).unlink()
        except FileNotFoundError:
            return False
        return True


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
