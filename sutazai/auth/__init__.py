"""Authentication and authorisation, one module per concept (no HTTP here):

  roles         admin > user > viewer, and the API-key scopes that mirror them
  passwords     argon2id hashing (off the event loop)
  secret        where the JWT signing secret comes from
  tokens        JWT encode/decode with the algorithm pinned
  api_keys      key generation, hashing and scopes
  accounts      the rules for users and passwords, and the first admin
  principal     who is calling, what they may do, which rate limits apply
  authenticate  bearer credential -> principal
  rate_limit    fixed-window counting in Redis with an in-memory fallback
  cli           create-user / set-password for the project CLI

SQL lives in `sutazai.storage` (one store per table); the routes in
`sutazai.api.sessions|keys|users|audit`; the dependencies in `sutazai.api.deps`.
"""
