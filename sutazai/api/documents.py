"""Documents: upload (202, indexed in the background), list, read, download, delete.

Only the owner's documents are visible. An upload is refused before it is read when its
Content-Length is over `documents_max_bytes` (413), and the file part is read with a cap
either way; its type comes from its bytes and name (415 when unsupported). The original
is stored as a file and the row as 'queued', then `services.documents_indexer(document)`
queues the indexing (a task of kind 'index'); without that hook it is indexed in this
replica, in the background. Search is `POST /api/v1/documents/search` (another module).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import unicodedata
import uuid
from pathlib import PurePosixPath
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from sutazai.api.deps import PageDep, ServicesDep, UserDep, ViewerDep
from sutazai.api.uploads import read_capped
from sutazai.documents.files import DocumentFiles
from sutazai.documents.parsing import detect
from sutazai.errors import InvalidInput, PayloadTooLarge, Unavailable
from sutazai.schemas.common import Page
from sutazai.schemas.documents import DocumentOut
from sutazai.services import Services
from sutazai.storage.documents import DocumentStore

logger = logging.getLogger("sutazai.documents")

router = APIRouter(prefix="/api/v1/documents", tags=["documents"])

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file
MAX_FILENAME = 255

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def document_store(services: Services) -> DocumentStore:
    return services.documents


def document_files(services: Services) -> DocumentFiles:
    return services.document_files


def clean_filename(name: str | None) -> str:
    """The client's file name as a label: its last path part, printable, at most 255 characters."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    base = base.encode("utf-8", "ignore").decode("utf-8")
    return base[:MAX_FILENAME] or "document"


def content_disposition(filename: str) -> str:
    """`attachment` always (an uploaded .html must not render in our origin), with an ASCII
    fallback name and the exact one as RFC 5987 `filename*`."""
    fallback = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\;' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.post("", status_code=202, response_model=DocumentOut, openapi_extra=_UPLOAD_BODY)
async def upload_document(request: Request, caller: UserDep, services: ServicesDep) -> JSONResponse:
    """Upload one file as multipart field `file` (.txt, .md, .pdf, .docx, .html); 202 with the
    document (Location: its URL) while it is indexed; poll it for `status` and `progress`."""
    limit = services.settings.documents_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"the upload is larger than {limit} bytes")
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidInput("send the file as multipart/form-data in a field named 'file'")
    async with request.form(max_files=1, max_fields=8) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("the multipart field 'file' (a file) is missing", details=[{"loc": ["body", "file"]}])
        data = await read_capped(upload, limit)
        filename, declared_type = clean_filename(upload.filename), upload.content_type
    if not data:
        raise InvalidInput("the file is empty", code="empty_document")
    media_type = detect(data, filename, declared_type)  # 415 / 422 before anything is stored

    document_id = uuid.uuid4()
    files, store = document_files(services), document_store(services)
    await files.write(caller.user_id, document_id, data)
    try:
        document = await store.create(
            document_id,
            caller.user_id,
            filename=filename,
            media_type=media_type,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        await services.documents_indexer(document)  # a durable 'index' task
    except BaseException:  # nothing half-written: no row without its task, no file without its row
        with contextlib.suppress(Exception):
            await store.delete(document_id, caller.user_id)
        await files.delete(caller.user_id, document_id)
        raise
    body = DocumentOut.of(document).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": f"/api/v1/documents/{document.id}"})


@router.get("", response_model=Page[DocumentOut])
async def list_documents(caller: ViewerDep, services: ServicesDep, page: PageDep) -> Page[DocumentOut]:
    items, total = await document_store(services).page(caller.user_id, limit=page.limit, offset=page.offset)
    return Page(items=[DocumentOut.of(d) for d in items], total=total, limit=page.limit, offset=page.offset)


@router.get("/{document_id}", response_model=DocumentOut)
async def get_document(document_id: uuid.UUID, caller: ViewerDep, services: ServicesDep) -> DocumentOut:
    """The document's metadata and indexing status (`chunks_indexed` of `chunks_total`, `progress`)."""
    return DocumentOut.of(await document_store(services).get(document_id, caller.user_id))


@router.get(
    "/{document_id}/content",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The original file."}},
)
async def download_document(document_id: uuid.UUID, caller: ViewerDep, services: ServicesDep) -> Response:
    """The original bytes, with the document's media type, as an attachment named as uploaded."""
    document = await document_store(services).get(document_id, caller.user_id)
    data = await document_files(services).read(caller.user_id, document.id)
    headers = {"Content-Disposition": content_disposition(document.filename), "X-Content-Type-Options": "nosniff"}
    return Response(content=data, media_type=document.media_type, headers=headers)


@router.delete("/{document_id}", status_code=204, response_class=Response)
async def delete_document(document_id: uuid.UUID, caller: UserDep, services: ServicesDep) -> Response:
    """The vectors first, then the rows (one statement; the chunks cascade), then the file: a
    failure part way leaves a document that can be deleted again, never vectors without a row."""
    store = document_store(services)
    document = await store.get(document_id, caller.user_id)
    if services.vectors is None:  # deleting rows but not vectors would leave them searchable
        raise Unavailable("the vector store is unreachable; try again", services.settings.retry_after_s)
    await services.vectors.delete_document(str(document.id))
    await store.delete(document.id, caller.user_id)
    await document_files(services).delete(caller.user_id, document.id)
    return Response(status_code=204)
