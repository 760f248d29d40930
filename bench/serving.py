"""What the benchmarks share about the servers they start: waiting until one answers /health."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_healthy(process: subprocess.Popen, base: str, timeout_s: float, what: str, poll_s: float = 0.5) -> None:
    """Returns once `base`/health answers 200; exits the benchmark (killing `process`) if the
    server exits first or does not answer within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited ({process.returncode})")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    process.kill()
    raise SystemExit(f"{what} did not answer /health within {timeout_s:.0f} s")
