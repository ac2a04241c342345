"""Request bodies of the reward server: parsed and checked field by field.

Every problem becomes a `RequestError` carrying the HTTP status and a message that names the
offending field (``query[3]``, ``[1].prompt[0].role``), so a caller can fix the request without
reading server logs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from rewardlab.data.pair import Message
from rewardlab.errors import RewardlabError

ROLES = ("system", "user", "assistant")


class RequestError(RewardlabError):
    """A request the server refuses; ``status`` is the HTTP status code to answer with.

    ``headers`` are extra response headers (``Retry-After`` on a 503 from a full queue).
    """

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class RewardRequest:
    """``POST /get_reward`` (OpenRLHF protocol): rendered prompt+response texts to score."""

    queries: list[str]
    prompts: list[str] | None
    labels: list[Any] | None


@dataclass(frozen=True)
class Conversation:
    """One ``POST /score`` item: chat messages ending with a user turn, and the assistant reply."""

    prompt: list[Message]
    response: str


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def parse_json(raw: bytes) -> Any:
    """Decode a UTF-8 JSON body or explain why it is not one."""
    if not raw:
        raise RequestError(400, "the request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, f"the request body is not UTF-8 (byte {error.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(
            400, f"the request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        # The C decoder recurses once per nesting level and stops at the interpreter's recursion
        # limit; a reward request nests a few levels, so this is a malformed (or hostile) body.
        raise RequestError(
            400,
            f"the request body nests JSON arrays or objects too deeply (the parser stops at about "
            f"{sys.getrecursionlimit()} levels); a reward request needs only a few",
        ) from None


def _check_count(count: int, field: str, max_texts: int) -> None:
    if count > max_texts:
        raise RequestError(
            413, f"{field} has {count} items; this server accepts at most {max_texts} per request (--max-texts)"
        )


def _string_list(payload: dict[str, Any], field: str, *, required: bool) -> list[str] | None:
    if field not in payload or (payload[field] is None and not required):
        if required:
            raise RequestError(422, f"missing field '{field}': a list of strings")
        return None
    value = payload[field]
    if not isinstance(value, list):
        raise RequestError(422, f"field '{field}' must be a list of strings, got {_type_name(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise RequestError(422, f"{field}[{index}] must be a string, got {_type_name(item)}")
    return value


def parse_reward_request(payload: Any, *, max_texts: int) -> RewardRequest:
    """Check an OpenRLHF ``/get_reward`` body: ``query`` required, ``prompts``/``labels`` optional."""
    if not isinstance(payload, dict):
        raise RequestError(
            422, f"the body must be a JSON object with a 'query' list, got a JSON {_type_name(payload)}"
        )
    queries = _string_list(payload, "query", required=True)
    assert queries is not None
    _check_count(len(queries), "query", max_texts)
    prompts = _string_list(payload, "prompts", required=False)
    if prompts is not None and len(prompts) != len(queries):
        raise RequestError(422, f"'prompts' has {len(prompts)} items but 'query' has {len(queries)}")
    labels = payload.get("labels")
    if labels is not None and not isinstance(labels, list):
        raise RequestError(422, f"field 'labels' must be a list, got {_type_name(labels)}")
    return RewardRequest(queries=queries, prompts=prompts, labels=labels)


def _parse_messages(value: Any, where: str) -> list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise RequestError(422, f"field '{where}' is an empty string; it needs the user's message")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise RequestError(
            422, f"{where} must be a string or a list of chat messages, got {_type_name(value)}"
        )
    if not value:
        raise RequestError(422, f"{where} is an empty list; it needs at least one user message")
    messages: list[Message] = []
    for index, message in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(message, dict):
            raise RequestError(422, f"{here} must be an object with 'role' and 'content', got {_type_name(message)}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RequestError(422, f"{here}.role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise RequestError(422, f"{here}.content must be a string, got {_type_name(content)}")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise RequestError(
            422, f"{where} must end with a user message (the response is the assistant's reply to it)"
        )
    if not messages[-1]["content"].strip():
        raise RequestError(
            422, f"{where}[{len(messages) - 1}].content is empty; the user message being answered needs text"
        )
    return messages


def _parse_conversation(value: Any, where: str) -> Conversation:
    if not isinstance(value, dict):
        raise RequestError(422, f"{where} must be an object with 'prompt' and 'response', got {_type_name(value)}")
    prefix = f"{where}." if where else ""
    if "prompt" not in value:
        raise RequestError(422, f"missing field '{prefix}prompt': a string or a list of chat messages")
    if "response" not in value:
        raise RequestError(422, f"missing field '{prefix}response': a string")
    response = value["response"]
    if not isinstance(response, str):
        raise RequestError(422, f"field '{prefix}response' must be a string, got {_type_name(response)}")
    if not response.strip():
        raise RequestError(
            422, f"field '{prefix}response' is empty; send the assistant reply to be scored"
        )
    return Conversation(prompt=_parse_messages(value["prompt"], f"{prefix}prompt"), response=response)


def parse_score_request(payload: Any, *, max_texts: int) -> list[Conversation]:
    """Check a ``/score`` body: one ``{"prompt", "response"}`` object or a non-empty list of them.

    Unlike OpenRLHF's ``/get_reward`` (where ``query: []`` is a valid empty batch and gets empty
    lists back), ``/score`` names each conversation itself, so an empty list, a blank response or a
    blank user turn is a caller's mistake and is refused with the field named.
    """
    if isinstance(payload, dict):
        return [_parse_conversation(payload, "")]
    if isinstance(payload, list):
        if not payload:
            raise RequestError(422, "the body is an empty list; send at least one {\"prompt\": ..., \"response\": ...}")
        _check_count(len(payload), "the list", max_texts)
        return [_parse_conversation(item, f"[{index}]") for index, item in enumerate(payload)]
    raise RequestError(
        422,
        "the body must be an object {\"prompt\": ..., \"response\": ...} or a list of them, "
        f"got a JSON {_type_name(payload)}",
    )
