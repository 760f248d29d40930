"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from sutazai.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)
