"""Authentication and authorisation (issue 3).

One module per concept:
  roles      admin > user > viewer, and the API-key scopes that mirror them
  passwords  argon2id hashing (off the event loop)
  secret     where the JWT signing secret comes from
  tokens     JWT encode/decode with the algorithm pinned
  users, refresh, api_keys, audit   SQL, one table each
  rate_limit Redis fixed-window counters with an in-memory fallback
  state      what the dependencies need, kept on `app.state.auth` (`init_auth`)
  principal  who is calling: `current_principal`, `require_role(...)`, token budget
  errors     401 (with WWW-Authenticate) / 403 builders
  cli        create-user / set-password for the project CLI
Routes live in `sutazai.api.auth`; CORS, body limit and headers in `sutazai.api.security`.
"""
