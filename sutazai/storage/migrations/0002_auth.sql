-- Authentication and authorisation: users, refresh-token families,
-- API keys, the audit log, and per-user ownership of conversations.

CREATE TABLE users (
    id UUID PRIMARY KEY,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    disabled BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Case-insensitive uniqueness: "Alice" and "alice" are the same account.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

-- One row per refresh token ever issued. A login starts a family; each refresh
-- marks the presented token used and issues the next one in the same family.
-- Presenting a used token again is reuse: the whole family is revoked.
CREATE TABLE refresh_tokens (
    jti UUID PRIMARY KEY,
    family_id UUID NOT NULL,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    issued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ NULL,
    replaced_by UUID NULL,
    revoked_at TIMESTAMPTZ NULL
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

-- API keys: only the SHA-256 of the key is stored; `prefix` is for display.
CREATE TABLE api_keys (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    scopes TEXT[] NOT NULL DEFAULT '{}',
    requests_per_minute INTEGER NULL CHECK (requests_per_minute > 0),
    tokens_per_minute INTEGER NULL CHECK (tokens_per_minute > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NULL,
    last_used_at TIMESTAMPTZ NULL,
    revoked_at TIMESTAMPTZ NULL
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at DESC);

-- Who did what, from where. Never holds passwords, tokens or keys.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_id UUID NULL REFERENCES users(id) ON DELETE SET NULL,
    actor_name TEXT NULL,
    action TEXT NOT NULL,
    target TEXT NULL,
    client_ip TEXT NULL,
    details JSONB NOT NULL DEFAULT '{}'::jsonb,
    request_id TEXT NULL
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id DESC);

-- Conversations belong to a user. NULL = created before authentication existed.
ALTER TABLE conversations ADD COLUMN user_id UUID NULL REFERENCES users(id) ON DELETE CASCADE;
CREATE INDEX conversations_user_idx ON conversations (user_id, updated_at DESC);
