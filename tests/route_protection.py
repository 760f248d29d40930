"""Walk every route of an app's OpenAPI schema and check its protection.

Reusable for the full ingress app: pass the app, a client for it, the routes
meant to be public, and headers of a "user" and a "viewer".

* a route with no auth dependency must be in `public`;
* every other route answers 401 (with WWW-Authenticate) without credentials
  and declares the bearer scheme in the schema;
* every admin route answers 403 to a user;
* every route that changes something (not GET/HEAD) answers 403 to a viewer,
  except those in `viewer_writes` (their own session and keys).
"""

from __future__ import annotations

import re
import uuid

import httpx
from fastapi import FastAPI

from sutazai.api.deps import PUBLIC, route_requirements

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
VIEWER_WRITES = {
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/keys"),
    ("DELETE", "/api/v1/auth/keys/{key_id}"),
    ("POST", "/api/v1/documents/search"),  # a read that takes a body: a viewer searches their own documents
}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def check_route_protection(
    app: FastAPI,
    client: httpx.AsyncClient,
    *,
    public: set[tuple[str, str]],
    user_headers: dict[str, str],
    viewer_headers: dict[str, str],
    viewer_writes: set[tuple[str, str]] = VIEWER_WRITES,
) -> dict[str, int]:
    requirements = route_requirements(app)
    problems: list[str] = []
    counts = {"public": 0, "protected": 0, "admin": 0, "viewer_forbidden": 0}
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            method = method.upper()
            key = (method, path)
            requirement = requirements.get(key, PUBLIC)
            if requirement == PUBLIC:
                counts["public"] += 1
                if key not in public:
                    problems.append(f"{method} {path} has no auth dependency and is not listed as public")
                continue
            counts["protected"] += 1
            if not operation.get("security"):
                problems.append(f"{method} {path} does not declare the bearer scheme in OpenAPI")
            url = _concrete(path)
            response = await client.request(method, url)
            if response.status_code != 401 or not response.headers.get("www-authenticate", "").startswith("Bearer"):
                problems.append(
                    f"{method} {path} without credentials answered {response.status_code}, not 401 + WWW-Authenticate"
                )
            if requirement == "admin":
                counts["admin"] += 1
                response = await client.request(method, url, headers=user_headers)
                if response.status_code != 403:
                    problems.append(f"admin route {method} {path} answered {response.status_code} to a user, not 403")
            if method not in READ_METHODS and key not in viewer_writes:
                counts["viewer_forbidden"] += 1
                response = await client.request(method, url, headers=viewer_headers)
                if response.status_code != 403:
                    problems.append(f"write route {method} {path} answered {response.status_code} to a viewer, not 403")
    assert not problems, "\n".join(problems)
    return counts
