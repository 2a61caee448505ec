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

`pair_task` chooses how the pairs are made (the masking is the same for all three):
- `random_next` (the default, above): a random B is filled up to the target length, while a true
  B ends where its document does. On short documents that is a shortcut: on the built-in
  summaries a classifier on the lengths alone tells 58.8% of held-out labels (`pair_lengths`).
- `random_next_matched`: a random B is whole sentences of another document, as many as bring its
  length closest to the true continuation it replaces (the nearest of a few documents tried),
  so both labels have alike lengths.
- `sentence_order`: ALBERT's sentence-order prediction (Lan et al. 2020, Sec. 3.1): both
  segments are consecutive text of one document, in order or (label 1) swapped.
In the last two, a one-sentence chunk always takes the next (or previous) sentence, whatever
its label, and one-sentence documents give no pair: were they kept only as random pairs, their
lengths would tell their label.

All randomness comes from the `random.Random` passed in, so a seed fixes the output.
"""

import dataclasses
from typing import List, Sequence


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    mask: int


RANDOM_NEXT = "random_next"
RANDOM_NEXT_MATCHED = "random_next_matched"
SENTENCE_ORDER = "sentence_order"
PAIR_TASKS = (RANDOM_NEXT, RANDOM_NEXT_MATCHED, SENTENCE_ORDER)
RANDOM_TEXT_TRIES = 10


@dataclasses.dataclass(frozen=True)
class InstanceSettings:
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    do_whole_word_mask: bool = False
    pair_task: str = RANDOM_NEXT


@dataclasses.dataclass
class Instance:
    token_ids: List[int]            # [CLS] A [SEP] B [SEP], with the masked positions replaced
    segment_ids: List[int]
    is_random_next: bool            # the pair's label 1: B is random, or (sentence_order) first
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
    previous_special = True
    for position, token in enumerate(token_ids):
        if token == special.cls or token == special.sep:
            previous_special = True
            continue
        # A segment may start with a "##" piece (truncation cut its word): it is a word of its
        # own, not part of the last word before [SEP].
        if (settings.do_whole_word_mask and not previous_special
                and is_continuation[token]):
            candidates[-1].append(position)
        else:
            candidates.append([position])
        previous_special = False
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
    if settings.pair_task == RANDOM_NEXT:
        pairs = _random_next_pairs(documents, document_index, settings, rng)
    elif settings.pair_task in (RANDOM_NEXT_MATCHED, SENTENCE_ORDER):
        pairs = _pairs_of_whole_chunks(documents, document_index, settings, rng)
    else:
        raise ValueError(f"Unknown pair_task {settings.pair_task!r}; choose one of "
                         f"{list(PAIR_TASKS)}.")
    instances = []
    # The pairs are made lazily: each is truncated and masked before the next is drawn, so the
    # random draws keep the order that fixed the default's output before the other pair tasks.
    for tokens_a, tokens_b, label in pairs:
        truncate_pair(tokens_a, tokens_b, settings.max_seq_length - 3, rng)
        if tokens_a and tokens_b:
            tokens = [special.cls] + tokens_a + [special.sep] + tokens_b + [special.sep]
            segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
            masked_tokens, positions, labels = mask_tokens(
                tokens, settings, special, is_continuation, replacement_ids, rng)
            instances.append(Instance(masked_tokens, segment_ids, label, positions, labels))
    return instances


def _target_length(settings, rng):
    max_num_tokens = settings.max_seq_length - 3
    if rng.random() < settings.short_seq_prob:
        return rng.randint(2, max_num_tokens)
    return max_num_tokens


def _random_next_pairs(documents, document_index, settings, rng):
    """(A, B, is_random_next) of the `random_next` task; a random B is filled to length."""
    document = documents[document_index]
    target_length = _target_length(settings, rng)
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
                other = documents[_other_document(documents, document_index, rng)]
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
            yield tokens_a, tokens_b, is_random_next
            chunk, chunk_length = [], 0
        i += 1


def _pairs_of_whole_chunks(documents, document_index, settings, rng):
    """(A, B, label) of `random_next_matched` and `sentence_order`: every chunk has at least
    two sentences before its label is drawn, so the label cannot change A's length."""
    document = documents[document_index]
    if len(document) < 2:
        return
    target_length = _target_length(settings, rng)
    chunk, chunk_length = [], 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_length:
            if len(chunk) == 1:
                if i + 1 < len(document):
                    i += 1
                    chunk.append(document[i])
                else:
                    chunk.insert(0, document[i - 1])
            a_end = rng.randint(1, len(chunk) - 1)
            tokens_a = [t for segment in chunk[:a_end] for t in segment]
            tokens_b = [t for segment in chunk[a_end:] for t in segment]
            label = rng.random() < 0.5
            if label and settings.pair_task == SENTENCE_ORDER:
                tokens_a, tokens_b = tokens_b, tokens_a
            elif label and len(documents) > 1:
                tokens_b = _random_text_near_length(
                    documents, document_index, len(tokens_b),
                    settings.max_seq_length - 3 - len(tokens_a), rng)
                i -= len(chunk) - a_end
            elif label:
                tokens_b = []  # a one-document corpus has no "other" text; the pair is skipped
            yield tokens_a, tokens_b, label
            chunk, chunk_length = [], 0
        i += 1


def _random_text_near_length(documents, document_index, length, room, rng):
    """Of whole-sentence runs from RANDOM_TEXT_TRIES random other documents, the one nearest
    `length` tokens that overflows the `room` left beside A exactly when the true half does.

    One document alone is often too short (the built-in summaries), and a long true half is cut
    to fill the instance: a random half a little shorter would leave it unfilled. With one try
    and no overflow rule the lengths told 55% of the labels on the summaries.
    """
    overflows = length > room
    best, best_key = None, None
    for _ in range(RANDOM_TEXT_TRIES):
        other = documents[_other_document(documents, document_index, rng)]
        run = sentences_near_length(other, length, rng)
        key = ((len(run) > room) != overflows, abs(len(run) - length))
        if best is None or key < best_key:
            best, best_key = run, key
        if best_key == (False, 0):
            break
    return best


def _other_document(documents, document_index, rng):
    for _ in range(10):
        other_index = rng.randint(0, len(documents) - 1)
        if other_index != document_index:
            break
    return other_index


def sentences_near_length(document, length, rng):
    """Consecutive whole sentences of `document` from a random one on, whose token count is the
    closest to `length` (on a tie, the shorter); where the document ends first, sentences
    before the start are added instead."""
    start = end = rng.randint(0, len(document) - 1)
    count = 0
    while end < len(document) and count + len(document[end]) <= length:
        count += len(document[end])
        end += 1
    while end == len(document) and start > 0 and count + len(document[start - 1]) <= length:
        start -= 1
        count += len(document[start])
    # One more sentence, forward or else backward, if it lands nearer than stopping short.
    following = (document[end] if end < len(document)
                 else document[start - 1] if start > 0 else None)
    if following is not None and (count == 0 or count + len(following) - length < length - count):
        if end < len(document):
            end += 1
        else:
            start -= 1
    return [t for segment in document[start:end] for t in segment]
