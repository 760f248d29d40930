"""Reading an uploaded file without holding more than its limit in memory."""

from __future__ import annotations

from starlette.datastructures import UploadFile

from sutazai.errors import PayloadTooLarge

READ_BLOCK = 1024 * 1024


async def read_capped(upload: UploadFile, limit: int) -> bytes:
    """The file's bytes; `PayloadTooLarge` (413) as soon as more than `limit` arrived."""
    parts, size = [], 0
    while block := await upload.read(READ_BLOCK):
        size += len(block)
        if size > limit:
            raise PayloadTooLarge(f"the file is larger than {limit} bytes")
        parts.append(block)
    return b"".join(parts)
