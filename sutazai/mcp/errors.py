"""Failures of an MCP server that the gateway turns into HTTP 503.

They cross the Ray boundary from the actor to the gateway, so they stay plain
(one message argument) and live in a module both sides import.
"""


class ServerUnavailable(Exception):
    """The server is starting, restarting, failed, or died under the call."""


class CallTimedOut(ServerUnavailable):
    """The call did not finish within its timeout."""


class InstanceRetired(ServerUnavailable):
    """A per_user server's actor stopped for being idle: nothing ran; the gateway makes a new one."""
