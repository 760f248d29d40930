"""Authentication and authorisation (issue 3).

One module per concept: `passwords` (argon2 hashing), `secret` (the JWT signing
secret), `tokens` (JWT encode/decode), `users`, `refresh`, `api_keys`, `audit`
(SQL, one table each), `rate_limit` (Redis counters with an in-memory fallback),
`state` (what the dependencies need, kept on `app.state.auth`), `principal`
(who is calling, and the FastAPI dependencies that enforce roles).
"""
