"""The FastAPI app: a thin HTTP layer over `Services`."""

from __future__ import annotations

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from sutazai import __version__
from sutazai.api import (
    agents,
    audit,
    cache,
    chat,
    cluster,
    conversations,
    documents,
    embeddings,
    jobs,
    keys,
    mcp,
    openai,
    retrieval,
    sessions,
    system,
    tasks,
    users,
)
from sutazai.api.errors import install_error_handlers
from sutazai.api.middleware import AccessMiddleware
from sutazai.api.security import install_security
from sutazai.api.shedding import SheddingMiddleware, model_paths
from sutazai.services import Services

ROUTERS = (
    system,
    sessions,
    keys,
    users,
    audit,
    chat,
    conversations,
    retrieval,  # POST /api/v1/documents/search, before the documents routes
    documents,
    cache,
    openai,
    embeddings,
    mcp,
    cluster,
    agents,
    tasks,
    jobs,
)


def create_app(services: Services) -> FastAPI:
    """The app for one replica's services (built by `sutazai.services.build_services`)."""
    settings = services.settings
    docs = settings.docs_enabled if settings.docs_enabled is not None else settings.embedded
    app = FastAPI(
        title="SutazAI",
        version=__version__,
        description="Self-hosted AI serving backend on Ray Serve.",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.services = services  # read only by sutazai.api.deps
    install_error_handlers(app, retry_after_s=settings.retry_after_s)
    for module in ROUTERS:
        app.include_router(module.router)
    # innermost: a shed request still gets the security headers, its id and its metrics
    app.add_middleware(
        SheddingMiddleware,
        inference=services.inference,
        paths=model_paths(app.routes),
        retry_after_s=settings.retry_after_s,
    )
    install_security(app, settings)
    if settings.trusted_proxies:  # the client address is X-Forwarded-For only when a trusted proxy says so
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    app.add_middleware(AccessMiddleware)  # added last: outermost, so every answer (even a 413) has an id and is counted
    return app
