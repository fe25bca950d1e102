"""How a teacher turns its token states into the one vector its classifier reads.

* ``cls``: BERT's pooler over the [CLS] token, what ``AutoModelForSequenceClassification`` builds.
* ``mean``: the attention-mask-weighted mean of the last layer's token states. all-MiniLM-L6-v2 was
  trained as a sentence encoder with this pooling; its [CLS] state and pooler were not, so a head
  on them starts from a representation the pretraining never shaped.

``mean`` is a bench option (``bench quality --teacher-pooling``): a saved teacher is reloaded as a
[CLS] classifier by every reader, so :func:`logdistill.model.engine.teacher.train_teacher` refuses it.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

__all__ = ["MeanPooledBert", "masked_mean", "sequence_classifier"]


def masked_mean(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``states`` [batch, tokens, hidden] averaged over the tokens whose ``attention_mask`` [batch, tokens]
    is 1 -> [batch, hidden]; padding never counts, and a row with no token is all zeros."""
    weights = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class MeanPooledBert(BertForSequenceClassification):
    """A BERT sequence classifier whose head reads :func:`masked_mean` of the last layer (the pooler is unused).
    Hidden states and attentions are returned as the base class returns them (the intermediate-layer loss reads them)."""

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs: Any) -> SequenceClassifierOutput:
        kwargs.pop("labels", None)  # the loss is the caller's (train.fit weighs the classes)
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            return_dict=True, **kwargs)
        states = outputs.last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(states.shape[:2], dtype=states.dtype, device=states.device)
        logits = self.classifier(self.dropout(masked_mean(states, attention_mask)))
        return SequenceClassifierOutput(logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


def sequence_classifier(base: str, pooling: str, **config: Any) -> Any:
    """``base`` with a fresh classification head over its ``pooling`` (one of
    :data:`logdistill.model.engine.teacher.POOLINGS`; ``config``: num_labels, id2label, label2id)."""
    if pooling == "cls":
        return AutoModelForSequenceClassification.from_pretrained(base, **config)
    if pooling != "mean":
        raise ValueError(f"unknown pooling {pooling!r}")
    model_type = AutoConfig.from_pretrained(base).model_type
    if model_type != "bert":
        raise ValueError(f"pooling mean is built for BERT encoders (minilm); {base} is a {model_type} encoder")
    return MeanPooledBert.from_pretrained(base, **config)
