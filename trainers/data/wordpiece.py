"""WordPiece vocabularies and tokenization with tensorflow-text.

A vocabulary is a list of tokens, one per line in a vocab file; the line number is the id.
It is either supplied or learned from the corpus with tensorflow-text's WordPiece learner.
"""

import collections

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib

# [PAD] first: padding writes id 0, as google-research/bert's data does.
RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
REQUIRED_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[MASK]")
TOKENIZERS = ("fast", "bert")
_BATCH = 2048


def read_vocab(path):
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"Vocab file {path} does not exist: give an existing WordPiece "
                                "vocab, or --vocab_size to learn one from the corpus.")
    with tf.io.gfile.GFile(path, "r") as f:
        vocab = [line.rstrip("\n") for line in f]
    while vocab and not vocab[-1]:
        vocab.pop()
    missing = [t for t in REQUIRED_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"Vocab file {path} lacks the special tokens {missing}; a BERT vocab "
                         f"needs {list(REQUIRED_TOKENS)} (and [PAD] as id 0).")
    return vocab


def write_vocab(vocab, path):
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(token + "\n" for token in vocab))


def count_words(documents, lower_case):
    """{word: count} after BERT's basic tokenization (punctuation split, optional lower case)."""
    basic = BasicTokenizer(lower_case=lower_case)
    counts = collections.Counter()
    sentences = [s for document in documents for s in document]
    for start in range(0, len(sentences), _BATCH):
        words = basic.tokenize(tf.constant(sentences[start:start + _BATCH]))
        counts.update(words.flat_values.numpy())
    return [(word.decode("utf-8"), count) for word, count in counts.items()]


def learn_vocab(documents, vocab_size, lower_case):
    """A WordPiece vocab of about `vocab_size` tokens (the learner stops within a few percent).

    The learner (pure Python) binary-searches a count threshold, running its refinement
    iterations at each probe. Two refinement iterations instead of four, and a search from 1
    instead of 10, take the built-in corpus from 80 s to 32 s for 7707 instead of 7715 tokens.
    """
    if vocab_size <= len(RESERVED_TOKENS):
        raise ValueError(f"--vocab_size={vocab_size} leaves no room beyond the "
                         f"{len(RESERVED_TOKENS)} special tokens; use thousands (e.g. 8000).")
    word_counts = count_words(documents, lower_case)
    if not word_counts:
        raise ValueError("The corpus has no words to learn a vocabulary from.")
    return wordpiece_tokenizer_learner_lib.learn(
        word_counts, vocab_size, list(RESERVED_TOKENS),
        lower_thresh=1, num_iterations=2)


def make_tokenizer(kind, vocab, lower_case):
    """tensorflow-text's FastBertTokenizer ("fast") or BertTokenizer ("bert"), giving ids."""
    if kind == "fast":
        return tf_text.FastBertTokenizer(
            vocab=list(vocab), token_out_type=tf.int64, lower_case_nfd_strip_accents=lower_case)
    if kind == "bert":
        table = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(
                list(vocab), tf.range(len(vocab), dtype=tf.int64)), num_oov_buckets=1)
        return tf_text.BertTokenizer(table, token_out_type=tf.int64, lower_case=lower_case)
    raise ValueError(f"Unknown tokenizer {kind!r}; choose one of {list(TOKENIZERS)}.")


def tokenize_documents(documents, tokenizer):
    """Documents as lists of token-id lists; sentences that tokenize to nothing are dropped."""
    sentences = [s for document in documents for s in document]
    ids = []
    for start in range(0, len(sentences), _BATCH):
        tokens = tokenizer.tokenize(tf.constant(sentences[start:start + _BATCH]))
        if tokens.ragged_rank == 2:  # BertTokenizer: [sentence, word, piece]
            tokens = tokens.merge_dims(1, 2)
        ids.extend(tokens.to_list())
    tokenized, cursor = [], 0
    for document in documents:
        sentences_ids = [s for s in ids[cursor:cursor + len(document)] if s]
        cursor += len(document)
        if sentences_ids:
            tokenized.append(sentences_ids)
    return tokenized
