"""Pure pieces of the CPU engine and the cache."""

from sutazai.cache import cache_key, is_deterministic
from sutazai.engines.llama_cpp import _held_back
from sutazai.engines.prompts import ChatTemplate
from sutazai.schemas.engine import GenerationRequest


def test_text_that_may_start_a_stop_string_is_held_back():
    assert _held_back("Answer 4\nUs", ["\nUser:"]) == 3
    assert _held_back("Answer 4", ["\nUser:"]) == 0
    assert _held_back("ab", ["abc", "b"]) == 2


def test_the_transcript_template_renders_a_generation_prompt():
    template = ChatTemplate(
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    assert template.render([{"role": "user", "content": "hi"}]) == "user: hi\nassistant:"


def _req(**kw):
    base = dict(prompt="p", max_tokens=4, temperature=0.7, top_p=1.0)
    return GenerationRequest(**(base | kw))


def test_only_greedy_or_seeded_requests_are_deterministic():
    assert is_deterministic(_req(temperature=0.0)) and is_deterministic(_req(seed=3))
    assert not is_deterministic(_req())


def test_cache_key_ignores_the_request_id_but_not_sampling():
    assert cache_key("m", _req(seed=1, request_id="a")) == cache_key("m", _req(seed=1, request_id="b"))
    assert cache_key("m", _req(seed=1)) != cache_key("m", _req(seed=2))
    assert cache_key("m", _req(seed=1)) != cache_key("n", _req(seed=1))
