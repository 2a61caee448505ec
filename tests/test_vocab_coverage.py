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


def test_a_cased_vocab_is_matched_without_lower_casing():
    vocab = SPECIAL + ["The", "the", "cat"]
    counts = collections.Counter({"The": 1, "the": 1, "Cat": 2})
    # Cased: "Cat" is not "cat", one [UNK]; lower-casing would have held all four words.
    held, per_word, missing = vocab_coverage.coverage(vocab, counts, lower_case=False)
    assert held == pytest.approx(2 / 4) and per_word == 1.0 and missing == ["Cat"]


def test_a_text_corpus_gets_the_vocab_create_pretraining_data_writes(tmp_path):
    from trainers.data import create_pretraining_data as creator
    from trainers.data import wordpiece
    text = tmp_path / "text.txt"
    text.write_text("".join(f"Sentence {i} of the first document about cats.\n"
                            f"Another line {i} on dogs and birds.\n\n" for i in range(30)))
    creator.create(creator.CreationOptions(input_file=str(text), output_dir=str(tmp_path / "s"),
                                           vocab_size=8000, max_seq_length=32,
                                           max_predictions_per_seq=4, dupe_factor=1))
    written = wordpiece.read_vocab(str(tmp_path / "s" / creator.VOCAB_FILE))
    assert vocab_coverage.corpus_vocab(str(text)) == written


def test_a_corpus_that_matches_no_file_is_refused_by_name():
    with pytest.raises(FileNotFoundError, match="'wiki' matches no file"):
        vocab_coverage.corpus_vocab("wiki")
