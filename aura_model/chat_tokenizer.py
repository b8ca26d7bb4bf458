"""A byte-level BPE tokenizer trained with `tokenizers`, wrapped with a ChatML chat template.

Used by the demo world (trained on the domain's text) and by the test fixtures (trained on a few lines).
Byte-level means any text encodes without unknown tokens, and decoding a prefix of the ids
gives a prefix of the text, which streaming relies on.
"""

from __future__ import annotations

from typing import Iterable

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_chat_tokenizer(texts: Iterable[str], vocab_size: int = 512, split_digits: bool = False,
                         extra_tokens: Iterable[str] = ()):
    """Train a byte-level BPE on ``texts``; returns a PreTrainedTokenizerFast with pad/eos and a chat template.

    ``split_digits=True`` pre-splits digits one per token, so "144" is always 1 4 4 (the demo
    LLM's numeric answers are then a small, regular output alphabet). ``extra_tokens`` (e.g. the
    phoneme characters of :mod:`aura_model.demo.phonemes`) are added after the BPE vocabulary, one token each.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    extra = list(extra_tokens)
    if extra:
        tok.add_tokens([AddedToken(t, normalized=False, single_word=False) for t in extra])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=IM_END, bos_token=IM_START,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
