"""Classification data: GLUE-style tables and the built-in tasks, tokenized for BERT.

A table is a .tsv (GLUE's format: tab-separated, unquoted) or .csv file whose header row names
its columns; the config says which hold the text (and a pair's second text) and the label.
A built-in task's split is named `NAME:SPLIT` (builtin_tasks.py: bbc_news, reuters_r8,
health_tweets, tweet_sentiment; train, dev or test).
"""

import csv
import hashlib
import io
import json

import numpy as np
import tensorflow as tf

from trainers.bert.finetune import builtin_tasks
from trainers.data import batching
from trainers.data import files as files_lib
from trainers.data import positions
from trainers.data import wordpiece

BBC_NEWS = "bbc_news"
BBC_NEWS_SPLITS = builtin_tasks.SPLITS
FEATURES = ("input_word_ids", "input_mask", "input_type_ids")
LABEL_KEY = "label_ids"
_TOKENIZE_BATCH = 1024


class Examples:
    """Texts (and second texts of pairs) with their labels, and the files they came from."""

    def __init__(self, texts, labels, sources, texts_b=None):
        self.texts, self.texts_b, self.labels, self.sources = texts, texts_b, labels, sources


# --------------------------------------------------------------------------- built-in tasks
def builtin(name, split):
    """One split ('train', 'dev' or 'test') of the built-in task `name` as Examples."""
    chosen = builtin_tasks.examples(name, split)
    return Examples([e.text for e in chosen], [e.label for e in chosen],
                    [e.source for e in chosen])


def bbc_news(split):
    """The BBC News task's `split` as Examples, labels = topics."""
    return builtin(BBC_NEWS, split)


def bbc_news_labels():
    return builtin_tasks.labels(BBC_NEWS)


# ----------------------------------------------------------------------------------- tables
def _rows(path):
    """(header, rows) of a .tsv (GLUE: unquoted) or .csv file."""
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    if path.endswith(".csv"):
        reader = csv.reader(io.StringIO(text))
    else:
        reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows = list(reader)
    if not rows:
        raise ValueError(f"{path} is empty: a table needs a header row naming its columns.")
    return rows[0], rows[1:]


def read_tables(data_config):
    """The Examples of the tables `data_config.input_path` names."""
    paths = files_lib.expand_patterns(data_config.input_path, what="classification data")
    wanted = [c for c in (data_config.text_column, data_config.text_b_column,
                          data_config.label_column) if c]
    texts, texts_b, labels, sources = [], [], [], []
    for path in paths:
        header, rows = _rows(path)
        missing = [c for c in wanted if c not in header]
        if missing:
            raise ValueError(f"{path} has no column {missing[0]!r} (its header: {header}); set "
                             "task.<train|eval>_data.text_column / text_b_column / label_column "
                             "to its column names.")
        where = {c: header.index(c) for c in wanted}
        for line, row in enumerate(rows, 2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line}: {len(row)} fields where the header has "
                                 f"{len(header)} (a tab or quote inside a text?).")
            texts.append(row[where[data_config.text_column]])
            if data_config.text_b_column:
                texts_b.append(row[where[data_config.text_b_column]])
            labels.append(row[where[data_config.label_column]])
            sources.append(f"{path}, line {line}")
    if not texts:
        raise ValueError(f"{data_config.input_path} holds no examples below its header.")
    return Examples(texts, labels, sources, texts_b if data_config.text_b_column else None)


def read(data_config):
    """The Examples of `data_config`: a built-in task's split or tables."""
    path = data_config.input_path.strip()
    if not path:
        raise ValueError("The classification data's input_path is empty: give .tsv/.csv files "
                         f"or a built-in task's split, one of {builtin_tasks.split_names()}.")
    named = builtin_tasks.parse(path)
    if named:
        return builtin(*named)
    return read_tables(data_config)


# ------------------------------------------------------------------------------ tokenizing
def examples_digest(examples):
    """sha256 of the texts and labels in order: what a position in a table's stream counts
    through, wherever the table was read from."""
    digest = hashlib.sha256()
    texts_b = examples.texts_b if examples.texts_b is not None else [None] * len(examples.texts)
    for row in zip(examples.texts, texts_b, examples.labels):
        digest.update(json.dumps(row).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _token_ids(texts, tokenizer):
    ids = []
    for start in range(0, len(texts), _TOKENIZE_BATCH):
        tokens = tokenizer.tokenize(tf.constant(texts[start:start + _TOKENIZE_BATCH]))
        ids.extend(tokens.merge_dims(1, -1).to_list())
    return ids


def pack(ids_a, ids_b, max_seq_length, cls_id, sep_id):
    """[CLS] a [SEP] (b [SEP]) cut to max_seq_length as google-research/bert's classifier does
    (a pair loses tokens from the end of its longer text first); (word ids, type ids)."""
    if ids_b is None:
        ids_a = ids_a[:max_seq_length - 2]
        ids_b = []
    else:
        ids_a, ids_b = list(ids_a), list(ids_b)
        while len(ids_a) + len(ids_b) > max_seq_length - 3:
            (ids_a if len(ids_a) > len(ids_b) else ids_b).pop()
    words = [cls_id] + list(ids_a) + [sep_id]
    types = [0] * len(words)
    if ids_b:
        words += list(ids_b) + [sep_id]
        types += [1] * (len(ids_b) + 1)
    return words, types


class ClassificationInput:
    """Examples tokenized once into arrays, and the datasets the runner reads from them."""

    def __init__(self, examples, vocab, do_lower_case, labels, max_seq_length):
        label_ids = {label: i for i, label in enumerate(labels)}
        unknown = [(label, source) for label, source in zip(examples.labels, examples.sources)
                   if label not in label_ids]
        if unknown:
            label, source = unknown[0]
            raise ValueError(f"{source}: label {label!r} is not one of task.labels {labels}; add "
                             "it there (the order of task.labels fixes the class ids).")
        tokenizer = wordpiece.make_tokenizer("fast", vocab, do_lower_case)
        ids_a = _token_ids(examples.texts, tokenizer)
        ids_b = (_token_ids(examples.texts_b, tokenizer) if examples.texts_b is not None
                 else [None] * len(ids_a))
        cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
        self.num_examples = len(ids_a)
        words = np.zeros([self.num_examples, max_seq_length], np.int32)
        types = np.zeros([self.num_examples, max_seq_length], np.int32)
        mask = np.zeros([self.num_examples, max_seq_length], np.int32)
        for i, (a, b) in enumerate(zip(ids_a, ids_b)):
            packed_words, packed_types = pack(a, b, max_seq_length, cls_id, sep_id)
            words[i, :len(packed_words)] = packed_words
            types[i, :len(packed_types)] = packed_types
            mask[i, :len(packed_words)] = 1
        self.arrays = {"input_word_ids": words, "input_mask": mask, "input_type_ids": types,
                       LABEL_KEY: np.array([label_ids[x] for x in examples.labels], np.int32)}
        self.files = sorted({s.split(", line ")[0] for s in examples.sources})
        self.digest = examples_digest(examples)

    def _pipeline_arrays(self, input_context):
        if input_context is None or input_context.num_input_pipelines == 1:
            return self.arrays
        share = slice(input_context.input_pipeline_id, None, input_context.num_input_pipelines)
        return {k: v[share] for k, v in self.arrays.items()}

    def train_dataset(self, global_batch_size, input_context=None, seed=None,
                      after=positions.NOTHING_READ):
        """Endless batches of the per-replica size, each epoch in a seeded order of its own,
        starting after data position `after`; each pipeline reads every num_pipelines-th
        example."""
        batch_size = batching.per_replica_batch_size(global_batch_size, input_context)
        arrays = self._pipeline_arrays(input_context)
        count = len(arrays[LABEL_KEY])
        if count < batch_size:
            raise ValueError(f"The training data has {count} examples per input pipeline, fewer "
                             f"than one per-replica batch ({batch_size}); lower "
                             "--train_batch_size.")
        tensors = {k: tf.constant(v) for k, v in arrays.items()}

        def gather(indices, where):
            batch = {k: tf.gather(v, indices) for k, v in tensors.items()}
            batch[positions.POSITION_KEY] = where
            return batch

        return (positions.permuted_indices(count, seed, after)
                .batch(batch_size, drop_remainder=True)
                .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    def eval_dataset(self, global_batch_size, input_context=None):
        """Exactly `eval_steps` batches per replica; every example once, padding flagged
        `is_real_example=0`."""
        arrays = dict(self._pipeline_arrays(input_context))
        arrays["is_real_example"] = np.ones([len(arrays[LABEL_KEY])], np.float32)
        padding = {k: tf.zeros(v.shape[1:], v.dtype) for k, v in arrays.items()}
        return (batching.padded_eval_batches(tf.data.Dataset.from_tensor_slices(arrays), padding,
                                             self.num_examples, global_batch_size, input_context)
                .prefetch(tf.data.AUTOTUNE))

    def eval_steps(self, global_batch_size):
        return batching.eval_steps(self.num_examples, global_batch_size)
