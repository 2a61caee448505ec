"""Training instances for BERT pretraining: next-sentence pairs and masked-LM targets.

Pure Python over token ids, following google-research/bert's create_pretraining_data.py:
each document is cut into chunks of about `max_seq_length` tokens (shorter with probability
`short_seq_prob`), each chunk becomes a pair A/B where B is the true continuation or, half of the
time, text from another document; then `masked_lm_prob` of the tokens (at most
`max_predictions_per_seq`) become targets, of which 80% are replaced by [MASK], 10% by a random
token and 10% kept. Two differences, on purpose:
- The random token is drawn from the vocabulary's ordinary tokens, never from bracketed special
  tokens such as [PAD] or [CLS].
- The original makes every one-sentence chunk a random-next pair. On short documents (the
  built-in corpus's summaries average under 4 sentences) that gives 65% random-next labels;
  here the coin is thrown first, and a one-sentence chunk that should continue is paired with
  its next sentence (or, at the end of a document, its previous one). Only one-sentence
  documents always give random pairs. The labels come out near 50/50.

All randomness comes from the `random.Random` passed in, so a seed fixes the output.
"""

import dataclasses
from typing import List, Sequence


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    mask: int


@dataclasses.dataclass(frozen=True)
class InstanceSettings:
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    do_whole_word_mask: bool = False


@dataclasses.dataclass
class Instance:
    token_ids: List[int]            # [CLS] A [SEP] B [SEP], with the masked positions replaced
    segment_ids: List[int]
    is_random_next: bool
    masked_positions: List[int]     # ascending
    masked_label_ids: List[int]     # the original token at each masked position


def truncate_pair(tokens_a, tokens_b, max_num_tokens, rng):
    """Trims the longer side, from its front or back at random, until the pair fits."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def mask_tokens(token_ids, settings, special, is_continuation, replacement_ids, rng):
    """Chooses masked-LM targets and applies 80/10/10 replacement; returns an Instance's parts.

    `is_continuation[id]` is True for "##" word pieces (whole-word masking groups them with the
    piece before); `replacement_ids` are the ids a random replacement may take.
    """
    candidates = []
    for position, token in enumerate(token_ids):
        if token == special.cls or token == special.sep:
            continue
        if settings.do_whole_word_mask and candidates and is_continuation[token]:
            candidates[-1].append(position)
        else:
            candidates.append([position])
    rng.shuffle(candidates)
    num_to_predict = min(settings.max_predictions_per_seq,
                         max(1, int(round(len(token_ids) * settings.masked_lm_prob))))
    output = list(token_ids)
    masked = []
    for group in candidates:
        if len(masked) >= num_to_predict:
            break
        if len(masked) + len(group) > num_to_predict:
            continue
        for position in group:
            if rng.random() < 0.8:
                replacement = special.mask
            elif rng.random() < 0.5:
                replacement = token_ids[position]
            else:
                replacement = replacement_ids[rng.randint(0, len(replacement_ids) - 1)]
            output[position] = replacement
            masked.append(position)
    masked.sort()
    return output, masked, [token_ids[p] for p in masked]


def instances_from_document(documents: Sequence, document_index, settings, special,
                            is_continuation, replacement_ids, rng):
    """All instances of one pass over `documents[document_index]` (a list of token-id lists)."""
    document = documents[document_index]
    max_num_tokens = settings.max_seq_length - 3
    target_length = max_num_tokens
    if rng.random() < settings.short_seq_prob:
        target_length = rng.randint(2, max_num_tokens)

    instances = []
    chunk, chunk_length = [], 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_length:
            is_random_next = len(document) == 1 or rng.random() < 0.5
            if not is_random_next and len(chunk) == 1:
                # A true pair needs two sentences: take the next one, or for a document's last
                # sentence the one before it as A.
                if i + 1 < len(document):
                    i += 1
                    chunk.append(document[i])
                else:
                    chunk.insert(0, document[i - 1])
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for segment in chunk[:a_end] for t in segment]
            tokens_b = []
            if is_random_next and len(documents) > 1:
                target_b_length = target_length - len(tokens_a)
                for _ in range(10):
                    other_index = rng.randint(0, len(documents) - 1)
                    if other_index != document_index:
                        break
                other = documents[other_index]
                for segment in other[rng.randint(0, len(other) - 1):]:
                    tokens_b.extend(segment)
                    if len(tokens_b) >= target_b_length:
                        break
                # The unused tail of this chunk goes back into the document for the next chunk.
                i -= len(chunk) - a_end
            elif is_random_next:
                tokens_b = []  # a one-document corpus has no "other" text; the pair is skipped
            else:
                tokens_b = [t for segment in chunk[a_end:] for t in segment]
            truncate_pair(tokens_a, tokens_b, max_num_tokens, rng)
            if tokens_a and tokens_b:
                tokens = [special.cls] + tokens_a + [special.sep] + tokens_b + [special.sep]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                masked_tokens, positions, labels = mask_tokens(
                    tokens, settings, special, is_continuation, replacement_ids, rng)
                instances.append(Instance(masked_tokens, segment_ids, is_random_next,
                                          positions, labels))
            chunk, chunk_length = [], 0
        i += 1
    return instances
