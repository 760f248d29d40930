-- Agent definitions, durable tasks and their events.

-- An agent: from a Markdown file in the agents folder (source 'file', synced at start,
-- read-only through the API) or made through the API (source 'api').
CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    system_prompt TEXT NOT NULL,
    model TEXT,                                   -- NULL: the default model
    tools TEXT[] NOT NULL DEFAULT '{}',           -- 'server/tool' or 'server/*'
    max_steps INTEGER NOT NULL,
    timeout_s DOUBLE PRECISION NOT NULL,
    sampling JSONB NOT NULL DEFAULT '{}',         -- temperature, top_p, max_tokens
    source TEXT NOT NULL CHECK (source IN ('file', 'api')),
    path TEXT,                                    -- the file, for source 'file'
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A task is stored before it is answered 202 and is the queue itself: dispatchers lease
-- queued rows with FOR UPDATE SKIP LOCKED; a runner holds the lease by heartbeats.
CREATE TABLE tasks (
    id UUID PRIMARY KEY,
    owner_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('agent', 'orchestrate')),
    agent TEXT,                                   -- the agent's name (the definition is snapshotted below)
    definition JSONB,                             -- the agent definition as it was at submission
    input TEXT NOT NULL,
    params JSONB NOT NULL DEFAULT '{}',
    idempotency_key TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_after TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner TEXT,
    lease_expires_at TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    parent_id UUID REFERENCES tasks(id) ON DELETE CASCADE,
    result JSONB,
    error JSONB,                                  -- {"code", "message"}
    usage JSONB NOT NULL DEFAULT '{}',
    event_seq BIGINT NOT NULL DEFAULT 0,          -- the last event's seq
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (owner_id, idempotency_key)
);
CREATE INDEX tasks_queued ON tasks (priority DESC, created_at) WHERE status = 'queued';
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_owner ON tasks (owner_id, created_at DESC);
CREATE INDEX tasks_status ON tasks (status, created_at DESC);
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;

-- Every step of a task, numbered per task (seq = the SSE event id).
CREATE TABLE task_events (
    task_id UUID NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    type TEXT NOT NULL,
    data JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, seq)
);
