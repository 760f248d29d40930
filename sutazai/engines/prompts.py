"""Chat templates: Jinja, as in Hugging Face tokenizer configs and GGUF metadata."""

from __future__ import annotations

from typing import Any, NoReturn

from jinja2 import StrictUndefined
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _raise(message: str) -> NoReturn:
    raise TemplateError(message)


class ChatTemplate:
    """Renders a list of {role, content} messages into the prompt a model was trained on."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(source)
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt, ending where the assistant's answer starts."""
        return self._template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=self._bos,
            eos_token=self._eos,
        )
