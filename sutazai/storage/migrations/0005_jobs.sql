-- Batch jobs submitted through the API: Ray's job submission keeps status and logs; this
-- table keeps who submitted each one (only its owner, or an admin, sees it) and its files.

CREATE TABLE batch_jobs (
    id TEXT PRIMARY KEY,                          -- Ray's submission id
    owner_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    input_path TEXT NOT NULL,
    output_path TEXT NOT NULL,
    lines INTEGER NOT NULL CHECK (lines >= 0),   -- non-blank input lines: progress is output lines / this
    max_tokens INTEGER,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX batch_jobs_owner ON batch_jobs (owner_id, created_at DESC);
