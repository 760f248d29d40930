"""The FastAPI app: a thin HTTP layer over `Services`."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from sutazai import __version__
from sutazai.api import auth, cache, chat, conversations, openai_compat, system
from sutazai.api.middleware import RequestIdMiddleware
from sutazai.api.security import install_security
from sutazai.auth.state import init_auth
from sutazai.errors import install_error_handlers
from sutazai.services import Services

# Routers of later pieces, mounted when their module is present.
_OPTIONAL_ROUTERS = ("sutazai.api.mcp",)


def build_api(services: Services) -> FastAPI:
    app = FastAPI(
        title="SutazAI",
        version=__version__,
        description="Self-hosted AI serving backend on Ray Serve.",
    )
    app.state.services = services
    install_error_handlers(app)
    for module in (system, auth, chat, conversations, cache, openai_compat):
        app.include_router(module.router)
    for name in _OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        app.include_router(module.router)
    install_security(app, services.settings)
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so every answer (even a 413) has an id
    return app


async def create_app(services: Services) -> FastAPI:
    """The app, ready to serve: auth state built and the first admin ensured."""
    app = build_api(services)
    await init_auth(app, services)
    return app
