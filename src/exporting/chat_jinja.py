"""The chat template (src/generation/chat_template.py) as the Jinja text transformers and llama.cpp
read (`chat_template` in tokenizer_config.json, `tokenizer.chat_template` in GGUF).

It is generated from the same constants, renders byte for byte what `chat_template.render` does
(the tests compare them), and refuses what `chat_template.validate` refuses: an unknown role, a
system message after the first, content that is not a string or holds a special-token string.
"""

from __future__ import annotations

from src.generation.chat_template import END, ROLES, role_tag
from src.tokenizers.base import SPECIAL_TOKENS


def _literal(text: str) -> str:
    """A Jinja string literal for `text` (single-quoted, backslash escapes)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def chat_template_jinja() -> str:
    roles = "[" + ", ".join(_literal(r) for r in ROLES) + "]"
    specials = "[" + ", ".join(_literal(t) for t in SPECIAL_TOKENS) + "]"
    open_tag = _literal(role_tag("ROLE").split("ROLE")[0])
    close_tag = _literal(role_tag("ROLE").split("ROLE")[1] + "\n")
    generation_prompt = _literal(role_tag("assistant") + "\n")
    return (
        "{%- for message in messages -%}"
        "{%- set position = loop.index0 -%}"
        f"{{%- if message['role'] not in {roles} -%}}"
        "{{ raise_exception('message ' ~ position ~ ': unknown role ' ~ message['role']) }}"
        "{%- endif -%}"
        "{%- if message['role'] == 'system' and not loop.first -%}"
        "{{ raise_exception('message ' ~ position ~ ': a system message may only come first') }}"
        "{%- endif -%}"
        "{%- if message['content'] is not string -%}"
        "{{ raise_exception('message ' ~ position ~ ': content must be a string') }}"
        "{%- endif -%}"
        f"{{%- for special in {specials} -%}}"
        "{%- if special in message['content'] -%}"
        "{{ raise_exception('message ' ~ position ~ ': content contains the special token ' ~ special) }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        f"{{{{- {open_tag} + message['role'] + {close_tag} + message['content'] + {_literal(END + chr(10))} -}}}}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{- {generation_prompt} -}}}}{{%- endif -%}}"
    )
