"""Test helpers for the Inspect integration: Inspect's mockllm model fed by rewardlab's scripted behaviours.

`scripted_mockllm` returns a real ``mockllm/model`` Inspect model whose ``custom_outputs`` callable answers
each conversation with the next turn of a scripted policy (`rewardlab.policies.scripted`), so every reply is
canned text that drives a known outcome label through Inspect's own model plumbing.
"""

from __future__ import annotations

from typing import Any

from inspect_ai.model import ChatMessage, GenerateConfig, Model, ModelOutput, ModelUsage, get_model

from rewardlab.envs.environments import make_environment
from rewardlab.integrations.inspect._convert import from_chat
from rewardlab.policies.scripted import ScriptedEpisode, ScriptedPolicy

Transcript = tuple[tuple[str, str], ...]


def _key(messages: list[dict[str, str]]) -> Transcript:
    return tuple((message["role"], message["content"]) for message in messages)


class ScriptedReplies:
    """The ``custom_outputs`` callable: one scripted episode per conversation.

    A conversation is recognised by its transcript: after answering, the transcript including the reply is
    remembered with the script, and the next request (that transcript plus the command output) finds it.
    Conversations with the same history are in the same state, so any of their scripts may answer.
    """

    def __init__(self, behaviour: str, hints_by_task: dict[str, dict[str, Any]]) -> None:
        self.policy = ScriptedPolicy(behaviour)
        self.hints_by_task = hints_by_task
        self.waiting: dict[Transcript, list[ScriptedEpisode]] = {}
        self.calls = 0
        self.stop_seqs: list[list[str] | None] = []

    def __call__(self, input: list[ChatMessage], tools: Any, tool_choice: Any, config: GenerateConfig) -> ModelOutput:
        self.calls += 1
        self.stop_seqs.append(config.stop_seqs)
        messages = from_chat(input)
        history = messages[:-1] if messages[-1]["role"] == "assistant" else messages
        scripts = self.waiting.get(_key(history[:-1]))
        if scripts:
            script = scripts.pop()
        else:
            task = next(m["content"] for m in reversed(history) if m["role"] == "user" and m["content"] in self.hints_by_task)
            script = self.policy.for_episode(self.hints_by_task[task])
        reply = script.generate(messages, config.stop_seqs or [])
        self.waiting.setdefault(_key(history + [{"role": "assistant", "content": reply}]), []).append(script)
        output = ModelOutput.from_content(model="mockllm", content=reply)
        # Usage given here, so mockllm does not count tokens with tiktoken (which downloads its tables).
        words = sum(len(m["content"].split()) for m in messages)
        output.usage = ModelUsage(input_tokens=words, output_tokens=len(reply.split()),
                                  total_tokens=words + len(reply.split()))
        return output


def scripted_mockllm(behaviour: str, env: str, *, seed: int, n: int, options: dict[str, str] | None = None,
                     ) -> tuple[Model, ScriptedReplies]:
    """A mockllm model playing ``behaviour`` in the first ``n`` variants of ``env`` under ``seed``."""
    # Variants do not depend on the grader; a placeholder one lets mode=free variants be built here.
    environment = make_environment(env, options, grader_policy=ScriptedPolicy("honest"))
    hints = {}
    for index in range(n):
        variant = environment.variant(index, seed)
        hints[variant.task] = {**variant.hints, "seed": seed, "index": index}
    replies = ScriptedReplies(behaviour, hints)
    return get_model("mockllm/model", custom_outputs=replies, memoize=False), replies
