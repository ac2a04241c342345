"""Request parsing: every malformed body is a RequestError with a status and the field's name."""

from __future__ import annotations

import json

import pytest

from rewardlab.serve.protocol import RequestError, parse_json, parse_reward_request, parse_score_request


def error_of(call) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value


def test_parse_json_errors() -> None:
    assert error_of(lambda: parse_json(b"")).status == 400
    bad = error_of(lambda: parse_json(b'{"query": ['))
    assert bad.status == 400 and "not valid JSON" in bad.message and "line 1" in bad.message
    assert "UTF-8" in error_of(lambda: parse_json(b'{"query": ["\xff"]}')).message
    assert parse_json(json.dumps({"query": ["é"]}).encode()) == {"query": ["é"]}


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b'{"a":' * 100_000, b'{"query": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"]
)
def test_parse_json_refuses_deep_nesting_with_a_400(body: bytes) -> None:
    error = error_of(lambda: parse_json(body))
    assert error.status == 400 and "nests JSON arrays or objects too deeply" in error.message


def test_parse_json_accepts_ordinary_nesting() -> None:
    nested = {"query": ["a"], "labels": [[[[[[[[1]]]]]]]]}
    assert parse_json(json.dumps(nested).encode()) == nested


def test_reward_request_round_trip() -> None:
    parsed = parse_reward_request({"query": ["a", "b"], "prompts": ["p", "q"], "labels": [1, None]}, max_texts=10)
    assert parsed.queries == ["a", "b"] and parsed.prompts == ["p", "q"] and parsed.labels == [1, None]
    minimal = parse_reward_request({"query": []}, max_texts=10)
    assert minimal.queries == [] and minimal.prompts is None and minimal.labels is None


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ([1, 2], 422, "JSON object"),
        ({}, 422, "missing field 'query'"),
        ({"query": "text"}, 422, "'query' must be a list of strings, got str"),
        ({"query": ["ok", 3]}, 422, "query[1] must be a string, got int"),
        ({"query": ["ok", None]}, 422, "query[1] must be a string, got null"),
        ({"query": ["a"], "prompts": ["p", "q"]}, 422, "'prompts' has 2 items but 'query' has 1"),
        ({"query": ["a"], "prompts": [7]}, 422, "prompts[0] must be a string"),
        ({"query": ["a"], "labels": "x"}, 422, "'labels' must be a list"),
        ({"query": ["a"] * 5}, 413, "at most 4"),
    ],
)
def test_reward_request_errors_name_the_field(payload: object, status: int, needle: str) -> None:
    error = error_of(lambda: parse_reward_request(payload, max_texts=4))
    assert error.status == status
    assert needle in error.message


def test_score_request_accepts_one_object_or_a_list() -> None:
    (one,) = parse_score_request({"prompt": "hi", "response": "hello"}, max_texts=4)
    assert one.prompt == [{"role": "user", "content": "hi"}] and one.response == "hello"
    many = parse_score_request(
        [
            {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "response": "r"},
            {"prompt": "plain", "response": " ok "},
        ],
        max_texts=4,
    )
    assert [c.prompt[-1]["content"] for c in many] == ["u", "plain"]


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ("text", 422, "got a JSON str"),
        ({"response": "r"}, 422, "missing field 'prompt'"),
        ({"prompt": "p"}, 422, "missing field 'response'"),
        ({"prompt": "p", "response": 5}, 422, "'response' must be a string, got int"),
        ({"prompt": 5, "response": "r"}, 422, "prompt must be a string or a list of chat messages"),
        ({"prompt": [], "response": "r"}, 422, "prompt is an empty list"),
        ({"prompt": ["hi"], "response": "r"}, 422, "prompt[0] must be an object"),
        ({"prompt": [{"role": "bot", "content": "x"}], "response": "r"}, 422, "prompt[0].role must be one of"),
        ({"prompt": [{"role": "user", "content": 1}], "response": "r"}, 422, "prompt[0].content must be a string"),
        (
            {"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "response": "r"},
            422,
            "must end with a user message",
        ),
        ([{"prompt": "p", "response": "r"}, {"prompt": "p"}], 422, "'[1].response'"),
        ([{"prompt": "p", "response": "r"}, 3], 422, "[1] must be an object"),
        ([{"prompt": "p", "response": "r"}] * 5, 413, "at most 4"),
        ([], 422, "the body is an empty list"),
        ({"prompt": "p", "response": ""}, 422, "field 'response' is empty"),
        ({"prompt": "p", "response": " \n\t"}, 422, "field 'response' is empty"),
        ([{"prompt": "p", "response": "r"}, {"prompt": "p", "response": ""}], 422, "field '[1].response' is empty"),
        ({"prompt": "", "response": "r"}, 422, "field 'prompt' is an empty string"),
        (
            {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": " "}], "response": "r"},
            422,
            "prompt[1].content is empty",
        ),
    ],
)
def test_score_request_errors_name_the_field(payload: object, status: int, needle: str) -> None:
    error = error_of(lambda: parse_score_request(payload, max_texts=4))
    assert error.status == status
    assert needle in error.message
