"""K-sample generation behind the policy interface: the prefix-shared HF sampler, n=k HTTP requests, replay."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from rewardlab.errors import ConfigError
from rewardlab.policies import PolicyError, ReplayPolicy
from rewardlab.policies.base import SamplingPolicy, SamplingSettings, sample_seed
from rewardlab.policies.hf import HFPolicy, pick_tokens
from rewardlab.policies.openai_http import OpenAIPolicy

PROMPT = [{"role": "user", "content": "What is 17 plus 25? Answer with the number."}]
OPENING = [{"role": "user", "content": "task"}, {"role": "assistant", "content": "<cot>"}]


@pytest.fixture(scope="module")
def policy(one_torch_thread) -> HFPolicy:
    return HFPolicy("tiny-random", max_new_tokens=8, temperature=0.0, device="cpu")


def _full_forward_logits(policy: HFPolicy, prompt_ids: list[int], new: list[int]) -> torch.Tensor:
    """Plain forward on prompt + continuation: the logits predicting each new token and the one after."""
    with torch.no_grad():
        logits = policy.model(input_ids=torch.tensor([prompt_ids + new])).logits[0]
    return logits[len(prompt_ids) - 1:].float()


def test_pick_tokens_is_inverse_cdf_sampling_with_temperature_and_top_p():
    probabilities = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probabilities.log().expand(1000, -1)
    grid = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
    counts = torch.bincount(pick_tokens(logits, grid, 1.0, 1.0), minlength=4).tolist()
    assert counts == [100, 200, 300, 400]
    # top_p 0.5 keeps the two most likely tokens (0.4 alone is below 0.5), renormalised to 4/7 and 3/7.
    counts = torch.bincount(pick_tokens(logits, grid, 1.0, 0.5), minlength=4).tolist()
    assert counts == [0, 0, 429, 571]
    # Temperature 2 samples from softmax(log p / 2), proportional to sqrt(p).
    counts = torch.bincount(pick_tokens(logits, grid, 2.0, 1.0), minlength=4)
    expected = probabilities.sqrt() / probabilities.sqrt().sum() * 1000
    assert torch.allclose(counts.double(), expected.double(), atol=1.0)
    assert pick_tokens(logits[:3], grid[:3], 0.0, 1.0).tolist() == [3, 3, 3]


def test_sampled_continuations_get_the_same_logits_as_a_full_forward(policy):
    settings = SamplingSettings(temperature=1.0, max_new_tokens=8, seed=3)
    policy.sample_batch = 3  # two decoding batches: the prefill cache is copied for the first
    try:
        sampled = policy.sample_tokens(PROMPT, 5, settings, keep_logits=True)
    finally:
        policy.sample_batch = None
    prompt_ids = policy.prompt_ids(policy.prompt_text(PROMPT), 8)
    assert len(sampled.tokens) == 5 and len({tuple(row) for row in sampled.tokens}) > 1
    for row, new in enumerate(sampled.tokens):
        expected = _full_forward_logits(policy, prompt_ids, new)
        steps = min(len(new) + 1, 8)
        got = torch.stack([sampled.step_logits[step][row] for step in range(steps)])
        assert torch.allclose(got, expected[:steps], atol=1e-4), f"row {row}"


def test_greedy_rows_equal_generate_tokens_and_scores(policy):
    settings = SamplingSettings(temperature=0.0, max_new_tokens=8)
    sampled = policy.sample_tokens(PROMPT, 3, settings, keep_logits=True)
    prompt_ids = policy.prompt_ids(policy.prompt_text(PROMPT), 8)
    with torch.no_grad():
        output = policy.model.generate(input_ids=torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=8,
                                       pad_token_id=policy.tokenizer.pad_token_id, output_logits=True,
                                       return_dict_in_generate=True)
    reference = output.sequences[0, len(prompt_ids):].tolist()
    assert all(row == reference for row in sampled.tokens)
    for step, logits in enumerate(output.logits):
        for row in range(3):
            assert torch.allclose(sampled.step_logits[step][row], logits[0].float(), atol=1e-4)
    texts = policy.sample(PROMPT, 2, settings)
    assert texts == [policy.tokenizer.decode(reference, skip_special_tokens=True)] * 2


def test_rows_stop_at_any_eos_id_and_finished_rows_leave_the_batch(one_torch_thread):
    policy = HFPolicy("tiny-random", device="cpu")
    settings = SamplingSettings(temperature=1.0, max_new_tokens=12, seed=5)
    free = policy.sample_tokens(PROMPT, 6, settings).tokens
    assert all(len(row) == 12 for row in free)
    stops = sorted({free[row][row + 1] for row in range(3)})  # rows 0-2 end early, at different steps
    policy.model.generation_config.eos_token_id = [policy.tokenizer.eos_token_id, *stops]
    assert set(stops) <= set(policy.eos_ids())
    stopped = policy.sample_tokens(PROMPT, 6, settings).tokens
    for before, after in zip(free, stopped):
        cut = min([before.index(stop) for stop in stops if stop in before], default=len(before))
        assert after == before[:cut]
    assert all(len(stopped[row]) <= row + 1 for row in range(3))


def test_samples_are_reproducible_per_index_and_change_with_the_seed(policy):
    settings = SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=8, seed=11)
    whole = policy.sample(PROMPT, 6, settings)
    assert policy.sample(PROMPT, 6, settings) == whole
    assert policy.sample(PROMPT, 2, settings, start=0) + policy.sample(PROMPT, 4, settings, start=2) == whole
    policy.sample_batch = 4
    try:
        assert policy.sample(PROMPT, 3, settings, start=3) == whole[3:]
    finally:
        policy.sample_batch = None
    assert len(set(whole)) > 1
    other = policy.sample(PROMPT, 6, SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=8, seed=12))
    assert other != whole and sum(a != b for a, b in zip(other, whole)) >= 5


def test_sample_continues_an_assistant_opening_and_refuses_bad_requests(policy):
    texts = policy.sample(OPENING, 2, SamplingSettings(max_new_tokens=4))
    assert all(text.startswith("<cot>") and len(text) > len("<cot>") for text in texts)
    with pytest.raises(PolicyError, match="exceeds the context"):
        policy.sample([{"role": "user", "content": "word " * 5000}], 2, SamplingSettings())
    with pytest.raises(ConfigError, match="at least 1"):
        policy.sample(PROMPT, 0, SamplingSettings())
    assert isinstance(policy, SamplingPolicy)


def test_sampling_settings_validate_and_key():
    assert SamplingSettings(temperature=1, top_p=1).key() == {"temperature": 1.0, "top_p": 1.0,
                                                               "max_new_tokens": 64, "seed": 0}
    json.dumps(SamplingSettings().key())
    for bad in ({"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5}, {"max_new_tokens": 0}):
        with pytest.raises(ConfigError):
            SamplingSettings(**bad)
    settings = SamplingSettings()
    assert sample_seed(settings, "p", 0) == sample_seed(SamplingSettings(), "p", 0)
    assert len({sample_seed(settings, "p", 0), sample_seed(settings, "p", 1), sample_seed(settings, "q", 0),
                sample_seed(SamplingSettings(seed=1), "p", 0)}) == 4


def test_replay_samples_cycle_through_the_turns():
    replay = ReplayPolicy(["<cot>a</cot> one", "two", "three"])
    assert replay.sample(OPENING, 4, SamplingSettings()) == ["<cot>a</cot> one", "<cot>two", "<cot>three",
                                                            "<cot>a</cot> one"]
    assert replay.sample(PROMPT, 2, SamplingSettings(), start=4) == ["two", "three"]


class NChatServer:
    """A chat/completions server on 127.0.0.1 answering ``n`` numbered choices (in reverse order); logs requests."""

    def __init__(self, short_by: int = 0) -> None:
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server.requests.append(body)
                count = body.get("n", 1) - short_by
                choices = [{"index": i, "finish_reason": "length",
                            "message": {"role": "assistant", "content": f"reply {i} seed {body.get('seed')}"}}
                           for i in reversed(range(count))]
                data = json.dumps({"id": "x", "object": "chat.completion", "choices": choices}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_sample_sends_one_request_with_n_and_returns_k_texts():
    server = NChatServer()
    try:
        policy = OpenAIPolicy("m", server.url, max_tokens=999, temperature=0.3)
        settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=32, seed=4)
        texts = policy.sample(OPENING, 5, settings, start=10)
        assert len(server.requests) == 1
        request = server.requests[0]
        assert request["n"] == 5 and request["max_tokens"] == 32 and request["temperature"] == 0.8
        assert request["top_p"] == 0.95 and request["messages"] == OPENING and "stop" not in request
        assert request["continue_final_message"] is True and isinstance(request["seed"], int)
        assert 0 <= request["seed"] < 2 ** 31
        assert texts == [f"<cot>reply {i} seed {request['seed']}" for i in range(5)]
        policy.sample(OPENING, 5, settings, start=10)
        policy.sample(OPENING, 5, settings, start=15)
        assert server.requests[1]["seed"] == request["seed"] != server.requests[2]["seed"]
        policy.close()
    finally:
        server.close()


def test_openai_sample_refuses_a_server_that_ignores_n():
    server = NChatServer(short_by=2)
    try:
        policy = OpenAIPolicy("m", server.url)
        with pytest.raises(PolicyError, match="3 choices for n=5"):
            policy.sample(PROMPT, 5, SamplingSettings())
        policy.close()
    finally:
        server.close()


def test_policy_dtype_is_chosen_by_name_and_keys_the_sample_store(one_torch_thread):
    from rewardlab.overopt.study import sample_key
    from rewardlab.policies.hf import resolve_policy_dtype

    assert resolve_policy_dtype("auto", torch.device("cpu")) is torch.float32
    half = HFPolicy("tiny-random", dtype="bfloat16", max_new_tokens=4)
    assert half.dtype is torch.bfloat16 and next(half.model.parameters()).dtype is torch.bfloat16
    assert len(half.sample([{"role": "user", "content": "hi"}], 3, SamplingSettings(max_new_tokens=4))) == 3
    # bfloat16 samples are not float32 samples: they are stored under another name
    assert sample_key("hf:tiny-random", half) == "hf:tiny-random@bfloat16"
    assert sample_key("hf:tiny-random", HFPolicy("tiny-random", max_new_tokens=4)) == "hf:tiny-random"
    assert sample_key("replay:x", ReplayPolicy(["a"])) == "replay:x"
    with pytest.raises(PolicyError, match="unknown policy dtype"):
        resolve_policy_dtype("int4", torch.device("cpu"))


PROMPTS = [PROMPT, [{"role": "user", "content": "Name a colour."}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of a country?"}]]


def test_many_prompts_sampled_together_give_each_prompts_own_samples(one_torch_thread):
    """Left-padded prompts decoded as one batch: the same samples (indices, streams) as one prompt at a time."""
    policy = HFPolicy("tiny-random", device="cpu")
    settings = SamplingSettings(temperature=1.0, max_new_tokens=10, seed=4)
    alone = [policy.sample_tokens(messages, 3, settings, start=2).tokens for messages in PROMPTS]
    policy.sample_batch = 6  # two prompts per decoding batch: a second chunk with one prompt
    together = [s.tokens for s in policy.sample_tokens_many(PROMPTS, 3, settings, start=2)]
    assert together == alone
    assert len({len(policy.prompt_ids(policy.prompt_text(m), 10)) for m in PROMPTS}) == 3  # padding was needed


def test_continuation_logprobs_sum_the_sampled_tokens_and_the_stop(one_torch_thread):
    policy = HFPolicy("tiny-random", device="cpu")
    settings = SamplingSettings(temperature=0.7, max_new_tokens=6, seed=1)
    rows = [policy.sample_tokens(PROMPT, 2, settings).tokens[0], [5, 6], []]
    got = policy.continuation_logprobs(PROMPT, rows, settings)
    prompt_ids = policy.prompt_ids(policy.prompt_text(PROMPT), 6)
    for tokens, value in zip(rows, got):
        logps = torch.log_softmax(_full_forward_logits(policy, prompt_ids, tokens) / 0.7, dim=-1)
        expected = sum(float(logps[i, t]) for i, t in enumerate(tokens))
        if len(tokens) < 6:  # ended early: the probability of stopping there
            expected += float(torch.logsumexp(logps[len(tokens), policy.eos_ids()], dim=0))
        assert value == pytest.approx(expected, abs=1e-4)
    many = policy.continuation_logprobs_many([PROMPT, PROMPTS[1]], [rows, rows[:1]], settings, batch_rows=2)
    assert many[0] == pytest.approx(got, abs=1e-4) and len(many[1]) == 1
    terms = policy.continuation_token_logprobs([PROMPT], [rows], settings)[0]
    assert [len(t) for t in terms] == [len(r) + (len(r) < 6) for r in rows]
    assert [sum(t) for t in terms] == pytest.approx(got, abs=1e-4)
