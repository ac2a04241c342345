"""`InspectModelPolicy`: an Inspect model behind rewardlab's `Policy` contract.

The contract is the one every rewardlab policy keeps (`rewardlab.policies.base`): chat messages and
stop strings in, the complete assistant message out, cut after the first stop string, continuing a
final assistant opening (the episode's ``<cot>``). Inspect providers differ in how they end a reply
at a stop string (most drop it) and in whether they continue a final assistant message, so the same
repairs the OpenAI policy makes are applied here, with the same helpers.

``prefill="continue"`` (default) sends the opening and treats the reply as its continuation (a reply
that already starts with the opening is kept as it is); ``prefill="none"`` drops the opening, for
providers that answer a final assistant message with a fresh reply.
"""

from __future__ import annotations

import anyio.from_thread
from inspect_ai.model import GenerateConfig, Model, ModelOutput, get_model

from rewardlab.data.pair import Message
from rewardlab.integrations.inspect._convert import to_chat
from rewardlab.policies.base import (
    CONTEXT_LIMIT,
    Generation,
    PolicyError,
    continuation_prefix,
    cut_at_stop,
    text_or_raise,
)
from rewardlab.policies.openai_http import PREFILL_MODES, finish_reason_of, restore_stop

_FINISH = {"stop": "stop", "max_tokens": "length"}
"""Inspect's stop reasons in the OpenAI terms `finish_reason_of` reads."""


class InspectModelPolicy:
    """A rewardlab `Policy` answered by an Inspect model.

    ``model`` is a `Model`, a model name, or None for the eval's current model; with ``role`` the
    eval's model for that role is used when one is bound (``--model-role grader=...``), else
    ``model``. The model is looked up on first use, inside the running eval.
    """

    def __init__(self, model: str | Model | None = None, *, role: str | None = None, prefill: str = "continue",
                 config: GenerateConfig | None = None) -> None:
        if prefill not in PREFILL_MODES:
            raise PolicyError(f"prefill must be one of {', '.join(PREFILL_MODES)}, got {prefill!r}")
        self._model, self._role, self.prefill = model, role, prefill
        self.config = config or GenerateConfig()
        self.last_output: ModelOutput | None = None

    def model(self) -> Model:
        """The Inspect model answering (resolved in the running eval)."""
        if isinstance(self._model, Model):
            return self._model
        if self._role is not None:
            return get_model(role=self._role, default=self._model, required=self._model is None)
        return get_model(self._model)

    @property
    def name(self) -> str:
        """``inspect:PROVIDER/MODEL``, the policy spec stored in episode records."""
        return f"inspect:{self.model()}"

    async def agenerate(self, messages: list[Message], stop: list[str]) -> Generation:
        """The assistant message for ``messages`` and why it ended (`rewardlab.policies.base.FINISH_REASONS`)."""
        prefix = continuation_prefix(messages)
        continuing = bool(prefix) and self.prefill == "continue"
        sent = messages if continuing or not prefix else messages[:-1]
        config = self.config.merge(GenerateConfig(stop_seqs=list(stop))) if stop else self.config
        output = await self.model().generate(to_chat(sent), config=config)
        self.last_output = output
        content = output.completion
        if output.stop_reason == "model_length" and not content:
            return Generation(prefix, CONTEXT_LIMIT)
        finish = _FINISH.get(output.stop_reason)
        content = restore_stop(content, stop, finish, None)
        full = prefix + content if continuing and not content.startswith(prefix) else content
        text = cut_at_stop(full, stop)
        return Generation(text, finish_reason_of(text, stop, finish))

    def generate(self, messages: list[Message], stop: list[str]) -> str:
        """`Policy.generate` for synchronous callers (graders) running in a worker thread of the eval.

        A model that cannot answer raises `PolicyError`, which episodes treat as a failure of the machinery
        (the sample errors, and Inspect can retry it), never as a label.
        """
        try:
            generation = anyio.from_thread.run(self.agenerate, messages, stop)
        except PolicyError:
            raise
        except Exception as error:  # noqa: BLE001 - any provider failure is the model's, not the episode's
            raise PolicyError(f"{self._model or self._role or 'the Inspect model'} could not answer: "
                              f"{type(error).__name__}: {error}"[:1000]) from error
        return text_or_raise(generation)
