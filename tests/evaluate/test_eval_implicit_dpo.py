import pytest
import torch

from rewardlab.data.render import render
from rewardlab.evaluate.items import EvalItem, Outcome, judge
from rewardlab.evaluate.scorers import ImplicitDPOScorer, load_scorer
from rewardlab.models.registry import load_backbone

PROMPTS = [
    [{"role": "user", "content": "Hello there, how are you?"}],
    [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."},
     {"role": "user", "content": "Another one, please, and say why it is good for you."}],
    [{"role": "user", "content": "Hi"}],
]
RESPONSES = ["I am well, thank you for asking!", "Bananas: they are rich in potassium.", "Hello."]


@pytest.fixture(scope="module")
def perturbed_policy(tmp_path_factory):
    model, tokenizer = load_backbone("tiny-random")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    folder = tmp_path_factory.mktemp("dpo-policy")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _response_logprob(model, tokenizer, prompt, response) -> float:
    rendered = render(tokenizer, prompt, response, max_length=1024, truncation="prompt-left")
    ids = torch.tensor([rendered.input_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    per_token = logprobs.gather(1, ids[0, 1:, None])[:, 0]
    return float(per_token[rendered.response_start - 1 :].sum())


def test_implicit_reward_is_policy_minus_reference_logprob(perturbed_policy):
    scorer = load_scorer(str(perturbed_policy), reference="tiny-random", batch_size=2)
    assert isinstance(scorer, ImplicitDPOScorer)
    rewards = scorer.score(PROMPTS, RESPONSES)  # padded batches of different lengths
    policy, tokenizer = load_backbone(str(perturbed_policy))
    reference, _ = load_backbone("tiny-random")
    for prompt, response, reward in zip(PROMPTS, RESPONSES, rewards):
        expected = _response_logprob(policy, tokenizer, prompt, response) - _response_logprob(reference, tokenizer, prompt, response)
        assert reward == pytest.approx(expected, abs=1e-4)
    assert any(abs(r) > 1e-3 for r in rewards)


def test_policy_equal_to_reference_gives_zero_reward_and_ties():
    scorer = ImplicitDPOScorer("tiny-random", "tiny-random")
    rewards = scorer.score(PROMPTS[:2], RESPONSES[:2])
    assert rewards == [0.0, 0.0]
    item = EvalItem(prompt=PROMPTS[0], chosen=RESPONSES[0], rejected=(RESPONSES[2],), dataset="d", subset="s")
    assert judge(item, scorer.score([PROMPTS[0]] * 2, [RESPONSES[0], RESPONSES[2]])) is Outcome.TIE
