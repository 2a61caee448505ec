"""How well a pretraining vocab fits a downstream task's words: the share of the task's running
words the vocab holds whole, and the WordPiece tokens per word.

    python -m benchmarks.vocab_coverage --corpus=builtin --corpus=builtin_broad
    python -m benchmarks.vocab_coverage --corpus="my_text/*.txt" --tasks=bbc_news
    python -m benchmarks.vocab_coverage --vocab_file=runs/tiny_wiki_lamb/vocab.txt

A word the vocab lacks reaches the encoder as pieces ("happy" as "happ ##y"), whose embeddings
were trained on whatever the pieces meant in the pretraining corpus; an encoder has a harder
time with a task whose telling words arrive that way. `--corpus` (a built-in corpus, or text files
as `create_pretraining_data --input_file` takes them) learns the vocab the trainer would
(8,000 tokens); `--vocab_file` reads one. Words are what BERT's basic tokenizer gives
(punctuation split off, lower-cased unless `--do_lower_case=false`), those with a letter
counted, over each task's whole texts (fine-tuning reads the first 128 tokens of each: all of a
tweet, the start of an article); a word the vocab cannot spell counts as one piece, [UNK].
"""

import argparse
import collections
import sys

from benchmarks import result_file

SHOWN_MISSING = 12


def task_words(task, lower_case=True, split="train"):
    """{word: count} of a built-in task's split, as the encoder's basic tokenizer splits it."""
    from trainers.bert.finetune import builtin_tasks  # pylint: disable=g-import-not-at-top
    from trainers.data import wordpiece  # pylint: disable=g-import-not-at-top
    texts = [example.text for example in builtin_tasks.examples(task, split)]
    counts = collections.Counter()
    for word, count in wordpiece.count_words([texts], lower_case=lower_case):
        if any(character.isalpha() for character in word):
            counts[word] += count
    return counts


def coverage(vocab, counts, lower_case=True):
    """(share of running words held whole, wordpieces per running word, the most frequent words
    not held whole) of `counts` under `vocab`."""
    from trainers.data import wordpiece  # pylint: disable=g-import-not-at-top
    whole = set(vocab)
    words = sorted(counts)
    tokenizer = wordpiece.make_tokenizer("fast", vocab, lower_case=lower_case)
    pieces = [len(ids) for ids in tokenizer.tokenize(words).to_list()]
    total = sum(counts.values())
    held = sum(counts[word] for word in words if word in whole)
    per_word = sum(counts[word] * n for word, n in zip(words, pieces)) / total
    missing = [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
               if word not in whole][:SHOWN_MISSING]
    return held / total, per_word, missing


def corpus_vocab(input_file, lower_case=True):
    """The vocab the trainer learns for `input_file` (a built-in corpus, or text files)."""
    from trainers.bert import builtin_data  # pylint: disable=g-import-not-at-top
    from trainers.data import corpus, wordpiece  # pylint: disable=g-import-not-at-top
    return wordpiece.learn_vocab(corpus.read_documents(input_file), builtin_data.VOCAB_SIZE,
                                 lower_case)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", default=[],
                        help="builtin, builtin_broad or text-file patterns: learn their vocab "
                             "(repeatable)")
    parser.add_argument("--vocab_file", action="append", default=[],
                        help="a WordPiece vocab file (repeatable)")
    parser.add_argument("--tasks", default="",
                        help="comma list of built-in tasks (default: every one)")
    parser.add_argument("--do_lower_case", default="true", choices=["true", "false"],
                        help="as the vocab was made (google-research/bert's flag)")
    args = parser.parse_args(argv)
    lower_case = args.do_lower_case == "true"
    if not args.corpus and not args.vocab_file:
        sys.exit("error: give --corpus=builtin (or builtin_broad) or --vocab_file=PATH.")
    from trainers.bert.finetune import builtin_tasks  # pylint: disable=g-import-not-at-top
    from trainers.data import wordpiece  # pylint: disable=g-import-not-at-top
    names = args.tasks.split(",") if args.tasks else list(builtin_tasks.TASKS)
    try:
        vocabs = {f"{name} ({len(vocab):,} tokens)": vocab for name, vocab in
                  [(name, corpus_vocab(name, lower_case)) for name in args.corpus]
                  + [(path, wordpiece.read_vocab(path)) for path in args.vocab_file]}
        tasks = {task: task_words(task, lower_case) for task in names}
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print("Running words of each task's train split held whole by the vocab, and WordPiece "
          "tokens per word; then the task's most frequent words the vocab splits.")
    width = max(len(name) for name in vocabs) + 2 + max(len(task) for task in tasks)
    print(f"{'vocab: task':<{width}}  held whole  pieces/word")
    splits = []
    for name, vocab in vocabs.items():
        for task, counts in tasks.items():
            held, per_word, missing = coverage(vocab, counts, lower_case)
            print(f"{name + ': ' + task:<{width}}  {100 * held:>9.1f}%  {per_word:>11.2f}")
            splits.append(f"{name}: {task}: {' '.join(missing)}")
    print("\n" + "\n".join(splits))


if __name__ == "__main__":
    result_file.run(main)
