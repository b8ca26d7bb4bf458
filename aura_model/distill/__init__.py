"""Distillation: what teaches the student, the LLM + LoRA reading audio through the AudioEmbedding.

Training adds up to eleven terms, the names in ``LOSS_TERMS``. ``total_loss`` weighs each by its
``DistillConfig`` field ``w_<term>``; a weight of 0 switches the term off (it is then not even computed),
which is how ablations run. By default two are on, ``layer`` and ``kl`` (weight 1); the others are 0.

* ``layer`` (``w_layer``, on): layer-wise alignment with the teacher ASR encoder, on the audio span. For
  each (student layer, teacher layer) pair of the layer map, the student's hidden states go through a
  training-only linear head (``ProjectionHeads``) to the teacher's width and are compared with the
  teacher's states, time-pooled by ``stack`` to the audio-token rate (``pool_time``):
  ``(1 - cosine) + beta * MSE`` on layer-normalised features, mean over the real (unpadded) positions,
  then mean over the pairs (``layer_alignment_loss``, ``projected_layerwise_loss``).
* ``kl`` (``w_kl``, on): response distillation. KL between the student's next-token distributions on the
  response tokens and those of the frozen base LLM (adapter off) reading the transcript, both softened by
  ``kl_temperature`` (``response_kl``).
* ``ce`` (``w_ce``, off): plain cross-entropy of the student's next-token predictions on the response
  tokens, the base LLM's cached answer (``response_ce``).
* ``state`` (``w_state``, off): text-state distillation. On the positions the student's prompt and the
  base LLM's transcript prompt share after the audio span (end of the user turn, assistant header,
  response), the student's hidden states at each layer of ``state_layers`` against the base LLM's; the
  per-position form of ``layer`` without heads, both sides being the same LLM (``text_state_loss``).
* ``align`` (``w_align``, off): text alignment on the audio span. At each hidden_states index of
  ``align_layers`` the student's states must hold the base LLM's states of the transcript tokens, in
  order, one audio position per token (the others are free): soft-DTW with temperature ``align_gamma``
  over 1 - cosine of layer-normalised states (``monotonic_match_loss``).
* ``ctc`` (``w_ctc``, off): on the audio span, the student's states at ``hidden_states[ctc_layer]`` must
  spell the transcript (or the clip's ``ctc_text``) in the LLM's own tokens: CTC over their cosines with
  the frozen token embeddings, the placeholder/pad token as blank (``TokenCTCHead``).
* ``decode`` (``w_decode``, off; needs ``w_layer > 0`` and a Whisper teacher with its decoder): on the
  audio span, the projection head of the pair that ends at the teacher's top layer feeds the teacher's own
  frozen decoder, which must write the transcript: teacher-forced cross-entropy per transcript token
  (``TeacherDecoderLoss``).

Token-rate AuRA (``model.pooling.layers`` > 0; the LLM's lower layers hear the clip alone, a pooler makes
about one input vector per text token, the base LLM reads them where the transcript would be) adds four,
all off by default and only for it (``TOKEN_RATE_TERMS``); the pooled tokens stand in the transcript's
place in the base LLM's own transcript prompt, so every target below lines up position by position:

* ``count`` (``w_count``): mean |sum of a clip's integrate-and-fire weights - its transcript's token
  count| (``count_loss``); training forces the transcript's count, inference lets the sum decide.
* ``tokens`` (``w_tokens``): each pooled token against the base LLM's embedding of its transcript token,
  ``(1 - cosine) + beta * MSE`` on layer-normalised features (``layer_alignment_loss``).
* ``read`` (``w_read``): the base LLM reading the pooled tokens against itself reading the transcript, at
  each layer of ``read_layers``, on every position from the request on (the request, the rest of the turn,
  the answer): the same loss, per position.
* ``slot_kl`` (``w_slot_kl``): on the request's positions, the next-token distributions after each pooled
  token against those after each transcript token (``response_kl`` over the request).

``layer`` then compares the teacher with the hearing pass's states (the clip alone through the lower
layers); ``kl`` and ``ce`` read the answer after the pooled request. ``state``, ``align``, ``ctc`` and
``decode`` belong to frame-rate AuRA.

Modules: ``config`` (``DistillConfig``, the layer map), ``losses`` (the pure loss functions and their
conventions on masks, dtypes and detached targets), ``heads`` (the training-only modules, never saved in
the adapter bundle).
"""

from .config import LOSS_TERMS, TOKEN_RATE_TERMS, DistillConfig, LayerMap, default_layer_map, validate_layer_map
from .heads import ProjectionHeads, TeacherDecoderLoss, TokenCTCHead
from .losses import (count_loss, layer_alignment_loss, layerwise_loss, monotonic_match_loss, pool_time, projected_layerwise_loss,
                     response_ce, response_kl, text_state_loss, total_loss)

__all__ = [
    "LOSS_TERMS", "TOKEN_RATE_TERMS", "DistillConfig", "LayerMap", "default_layer_map", "validate_layer_map",
    "ProjectionHeads", "TeacherDecoderLoss", "TokenCTCHead",
    "count_loss", "layer_alignment_loss", "layerwise_loss", "monotonic_match_loss", "pool_time", "projected_layerwise_loss",
    "response_ce", "response_kl", "text_state_loss", "total_loss",
]
