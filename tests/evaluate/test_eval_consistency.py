"""The same conversation gets the same score through `rewardlab score`, `rewardlab eval` and the
exported sequence-classification model."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardlab.cli import main
from rewardlab.data.render import conversation_text
from rewardlab.evaluate.workflow import run_evaluation

PROMPT = "What is the capital of France?"
RESPONSE = "The capital of France is Paris."


def test_score_eval_and_exported_seq_cls_agree(tiny_models, tmp_path, capsys):
    assert main(["score", str(tiny_models["linear"]), "--prompt", PROMPT, "--response", RESPONSE]) == 0
    from_score_cli = float(capsys.readouterr().out.strip().splitlines()[-1])

    data = tmp_path / "one.json"
    data.write_text(json.dumps([{"input": PROMPT, "output_1": RESPONSE, "output_2": "Lyon.", "label": 1}]))
    from_eval = run_evaluation([str(tiny_models["linear"])], data=[f"llmbar:{data}"], progress=False)
    from_eval_exported = run_evaluation([str(tiny_models["seqcls"])], data=[f"llmbar:{data}"], progress=False)
    eval_score = from_eval.models[0].item_scores[0][0]
    exported_score = from_eval_exported.models[0].item_scores[0][0]
    assert from_eval_exported.models[0].info["kind"] == "sequence classification"

    # the exported folder, used the plain transformers way on the same rendered text
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["seqcls"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["seqcls"]).eval()
    text = conversation_text(tokenizer, [{"role": "user", "content": PROMPT}], RESPONSE)
    with torch.no_grad():
        plain = model(**tokenizer(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0].item()

    assert eval_score == pytest.approx(from_score_cli, abs=1e-5)  # the CLI prints 6 decimals
    assert exported_score == pytest.approx(eval_score, abs=1e-5)
    assert plain == pytest.approx(eval_score, abs=1e-5)
