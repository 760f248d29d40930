-- Documents for retrieval: one row per upload (the original is a file under the
-- documents folder), its chunks with their text spans, and keyword search over them.

CREATE TABLE documents (
    id UUID PRIMARY KEY,
    owner_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    filename TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL CHECK (size_bytes >= 0),
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'indexing', 'ready', 'failed')),
    error JSONB,                                  -- {"code", "message"} when failed
    chunks_total INTEGER NOT NULL DEFAULT 0,
    chunks_indexed INTEGER NOT NULL DEFAULT 0,
    pages INTEGER,                                -- PDFs only
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    indexed_at TIMESTAMPTZ
);
CREATE INDEX documents_owner ON documents (owner_id, created_at DESC);

-- A chunk: its text and where it lies in the document's text (start_char, end_char: a
-- citation's span) and page; `id` is the chunk's point id in the vector store.
CREATE TABLE document_chunks (
    document_id UUID NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    chunk_index INTEGER NOT NULL,
    id UUID NOT NULL UNIQUE,
    text TEXT NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    page INTEGER,
    tokens INTEGER NOT NULL,
    tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    PRIMARY KEY (document_id, chunk_index)
);
CREATE INDEX document_chunks_tsv ON document_chunks USING GIN (tsv);

-- Indexing a document runs as a durable task of kind 'index'.
ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check,
    ADD CONSTRAINT tasks_kind_check CHECK (kind IN ('agent', 'orchestrate', 'index'));
