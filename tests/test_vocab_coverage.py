"""benchmarks.vocab_coverage against counts worked out by hand."""

import collections

import pytest

from benchmarks import vocab_coverage

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_coverage_counts_running_words_held_whole_and_pieces_per_word():
    vocab = SPECIAL + ["the", "cat", "##s", "sat", "s", "##a", "##t"]
    # "the" x3 and "sat" x1 are held whole; "cats" x2 is "cat ##s", "sas" x1 "s ##a ##s";
    # "dog" x2 has no pieces in the vocab: one [UNK].
    counts = collections.Counter({"the": 3, "cats": 2, "sat": 1, "sas": 1, "dog": 2})
    held, per_word, missing = vocab_coverage.coverage(vocab, counts)
    assert held == pytest.approx(4 / 9)
    assert per_word == pytest.approx((3 * 1 + 2 * 2 + 1 * 1 + 1 * 3 + 2 * 1) / 9)
    # Most frequent first, ties in alphabetical order.
    assert missing == ["cats", "dog", "sas"]


def test_task_words_are_lower_cased_and_keep_only_words_with_a_letter(monkeypatch):
    from trainers.bert.finetune import builtin_tasks
    examples = [builtin_tasks.Example("The cat sat, 2 cats!", "a", "x"),
                builtin_tasks.Example("THE end.", "b", "y")]
    monkeypatch.setattr(builtin_tasks, "examples", lambda task, split: examples)
    assert vocab_coverage.task_words("any") == {"the": 2, "cat": 1, "sat": 1, "cats": 1,
                                                "end": 1}


def test_an_unknown_corpus_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="builtin_broad"):
        vocab_coverage.corpus_vocab("wiki")
