"""Documents for retrieval: parse uploads to text, chunk by the embedder's tokens, keep the
originals on disk, and index the chunks (Postgres rows + vectors)."""
