"""A synthetic corpus whose every token says where it comes from, and its vocab.

Word `d{doc}w{k}` is the k-th word of document `doc`, so any instance can be traced back to the
documents and positions its tokens came from, without a tokenizer. With `split_words=True`, the
vocab lacks the words and has their pieces `d{doc}` and `##w{k}` instead, so each word is two
word pieces.
"""

import os

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_corpus(directory, num_documents=40, sentences_per_document=6, words_per_sentence=8,
                 num_files=2, split_words=False):
    """Writes text files and vocab.txt; returns (text file paths, vocab path, documents).

    `documents[d]` is the list of word strings of document d in order.
    """
    os.makedirs(directory, exist_ok=True)
    documents = []
    for d in range(num_documents):
        # Documents have different lengths so that chunking varies.
        count = sentences_per_document + d % 3
        documents.append([[f"d{d}w{s * words_per_sentence + k}" for k in range(words_per_sentence)]
                          for s in range(count)])
    paths = []
    for f in range(num_files):
        path = os.path.join(directory, f"text_{f}.txt")
        with open(path, "w") as out:
            for document in documents[f::num_files]:
                out.write("\n".join(" ".join(sentence) for sentence in document) + "\n\n")
        paths.append(path)
    if split_words:
        max_words = max(len(d) for d in documents) * words_per_sentence
        vocab = SPECIAL + [f"d{d}" for d in range(num_documents)] + [
            f"##w{k}" for k in range(max_words)]
    else:
        vocab = SPECIAL + [w for document in documents for sentence in document for w in sentence]
    vocab_path = os.path.join(directory, "vocab.txt")
    with open(vocab_path, "w") as out:
        out.write("\n".join(vocab) + "\n")
    flat = [[w for sentence in document for w in sentence] for document in documents]
    return paths, vocab_path, flat
