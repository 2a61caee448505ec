"""The built-in pretraining inputs: `bbc_news:train` (shards of the BBC News task's training
articles only, tokenized with the Wikipedia data's vocab; the dev and test articles are
refused), `builtin_broad`, and a cache of its own for each pair task and masking."""

import collections
import os
import re

import pytest
import tensorflow as tf

from tests import pretraining_records
from trainers.bert import builtin_data
from trainers.bert.config import BertDataConfig, BertTaskConfig
from trainers.bert.finetune import data as task_data
from trainers.bert.task import BertPretrainingTask
from trainers.data import corpus
from trainers.data import create_pretraining_data as creator
from trainers.data import instances

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _words(texts):
    return collections.Counter(w for t in texts for w in re.findall(r"[a-z]+", t.lower()))


def test_bbc_news_train_shards_hold_only_the_training_articles_in_the_given_vocab(
        tmp_path, monkeypatch):
    train = _words(task_data.bbc_news("train").texts)
    held_out = _words(task_data.bbc_news("dev").texts + task_data.bbc_news("test").texts)
    # The stand-in for the Wikipedia vocab: words only the training articles have, and words
    # only the dev and test articles have. Ids of the second kind must never appear.
    train_only = [w for w, _ in train.most_common() if w not in held_out][:150]
    held_out_only = [w for w, _ in held_out.most_common() if w not in train][:150]
    vocab = SPECIAL + train_only + held_out_only
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    (wiki / "vocab.txt").write_text("\n".join(vocab) + "\n")
    monkeypatch.setattr(builtin_data, "cache_root", lambda: str(tmp_path / "cache"))
    monkeypatch.setattr(builtin_data, "ensure", lambda *shape: str(wiki))
    monkeypatch.setattr(builtin_data, "DUPE_FACTOR", 1)

    directory = builtin_data.directory_of(" bbc_news:train", 64, 8)
    assert directory.startswith(str(tmp_path / "cache"))
    assert open(os.path.join(directory, "vocab.txt")).read().split() == vocab
    seen = collections.Counter()
    paths = tf.io.gfile.glob(os.path.join(directory, "*-*.tfrecord"))
    for _, ids in pretraining_records.unmasked_examples(paths):
        seen.update(ids)  # the text's own tokens, masked positions restored
    first_held_out = len(SPECIAL) + len(train_only)
    assert sum(seen[i] for i in range(len(SPECIAL), first_held_out)) > 1_000
    assert sum(seen[i] for i in range(first_held_out, len(vocab))) == 0

    data = BertDataConfig(input_path="bbc_news:train", max_seq_length=64,
                          max_predictions_per_seq=8)
    task = BertPretrainingTask(BertTaskConfig(train_data=data, eval_data=data))
    assert sorted(task.inputs("train").files) == sorted(
        tf.io.gfile.glob(os.path.join(directory, "train-*.tfrecord")))
    assert builtin_data.directory_of("BBC_News: train", 64, 8) == directory  # cached
    (wiki / "vocab.txt").write_text("\n".join(vocab[:-1]) + "\n")
    assert builtin_data.directory_of("bbc_news:train", 64, 8) != directory  # another vocab


@pytest.mark.parametrize("split", ["dev", "test", " Test"])
def test_pretraining_on_the_articles_that_judge_fine_tuning_is_refused(split):
    with pytest.raises(ValueError, match="only bbc_news:train.*leak"):
        builtin_data.directory_of(f"bbc_news:{split}", 128, 20)


def test_an_unknown_bbc_news_split_is_named_as_such():
    with pytest.raises(ValueError, match="'bbc_news:training': unknown BBC News split"):
        builtin_data.directory_of("bbc_news:training", 128, 20)


@pytest.fixture
def recorded_creations(tmp_path, monkeypatch):
    """builtin_data's caches in tmp_path, 'made' by recording the options they were made with."""
    made = []

    def record(options):
        made.append(options)
        os.makedirs(options.output_dir, exist_ok=True)
        with open(os.path.join(options.output_dir, creator.DATA_DESCRIPTION_FILE), "w") as f:
            f.write("{}")

    monkeypatch.setattr(builtin_data, "cache_root", lambda: str(tmp_path))
    monkeypatch.setattr(creator, "create", record)
    return made


def test_each_corpus_pair_task_and_masking_has_a_cache_of_its_own(recorded_creations):
    # The name the default's shards were made under before these options: kept, so that the
    # committed results' data is found again.
    assert os.path.basename(builtin_data.directory_of("builtin", 128, 20)) == \
        "bert_wiki_seq128_pred20_vocab8000_dupe5"
    directories = {}
    for corpus in ("builtin", "builtin_broad"):
        for pair_task in instances.PAIR_TASKS:
            for whole_words in (False, True):
                directories[corpus, pair_task, whole_words] = builtin_data.directory_of(
                    corpus, 128, 20, pair_task=pair_task, do_whole_word_mask=whole_words)
    assert len(set(directories.values())) == 12
    made = {(o.input_file, o.pair_task, o.do_whole_word_mask): o.output_dir
            for o in recorded_creations}
    assert made == directories  # each made once (the default's first call included), as named
    assert builtin_data.directory_of(" builtin_broad", 128, 20, pair_task="sentence_order") \
        == directories["builtin_broad", "sentence_order", False]
    assert len(recorded_creations) == 12  # cached


def test_ones_own_shards_are_never_made_whatever_the_settings(recorded_creations):
    assert builtin_data.directory_of("/data/x-*", 128, 20, pair_task="sentence_order") is None
    assert builtin_data.directory_of("/data/x-*", 128, 20, do_whole_word_mask=True) is None
    assert not recorded_creations


def test_the_data_config_must_say_how_ones_own_shards_were_made(tmp_path):
    """The pair task and masking of one's own shards are read from their pretraining_data.json
    (or taken for google-research/bert's when there is none) and must match the config: a
    recipe of sentence order over random-next shards would score another task than it names."""
    import json
    import shutil
    from tests import bert_runs
    from trainers import config as config_lib

    made = bert_runs.make_data(str(tmp_path / "made"))  # create_pretraining_data's defaults

    def task(directory, **data):
        experiment = bert_runs.experiment(directory)
        for split in ("train_data", "eval_data"):
            config_lib.merge(experiment, {"task": {split: data}})
        return BertPretrainingTask(experiment.task)

    assert task(made).inputs("train").files
    with pytest.raises(ValueError, match=re.escape(
            f"task.train_data.pair_task='sentence_order' but the shards in {made} were made "
            "with pair_task='random_next': set task.train_data.pair_task and "
            "task.eval_data.pair_task to 'random_next'")):
        task(made, pair_task="sentence_order").inputs("train")

    described = str(tmp_path / "sentence_order")
    shutil.copytree(made, described)
    with open(os.path.join(described, creator.DATA_DESCRIPTION_FILE)) as f:
        description = json.load(f)
    description["settings"].update(pair_task="sentence_order", do_whole_word_mask=True)
    with open(os.path.join(described, creator.DATA_DESCRIPTION_FILE), "w") as f:
        json.dump(description, f)
    assert task(described, pair_task="sentence_order", do_whole_word_mask=True).inputs("eval")
    with pytest.raises(ValueError, match=r"task.eval_data.do_whole_word_mask=False but .* "
                                         r"were made with do_whole_word_mask=True"):
        task(described, pair_task="sentence_order").inputs("eval")

    bare = str(tmp_path / "bare")  # as google-research/bert writes them: no description
    shutil.copytree(made, bare, ignore=shutil.ignore_patterns(creator.DATA_DESCRIPTION_FILE))
    assert task(bare).inputs("train").files
    with pytest.raises(ValueError, match=r"have no pretraining_data.json, so they are taken to "
                                         r"be made with do_whole_word_mask=False"):
        task(bare, do_whole_word_mask=True).inputs("train")
    # Shards made elsewhere are declared by a description of their settings alone.
    with open(os.path.join(bare, creator.DATA_DESCRIPTION_FILE), "w") as f:
        json.dump({"settings": {"pair_task": "sentence_order"}}, f)
    assert task(bare, pair_task="sentence_order").inputs("train").files
    with pytest.raises(ValueError, match="were made with pair_task='sentence_order'"):
        task(bare).inputs("train")


def test_train_and_eval_pair_tasks_must_agree():
    data = BertDataConfig(input_path="builtin", pair_task="sentence_order")
    with pytest.raises(ValueError, match=r"task.train_data.pair_task='sentence_order' but "
                                         r"task.eval_data.pair_task='random_next'"):
        BertPretrainingTask(BertTaskConfig(train_data=data))
    with pytest.raises(ValueError, match=r"task.eval_data.pair_task='sop' is not one of"):
        BertPretrainingTask(BertTaskConfig(eval_data=BertDataConfig(pair_task="sop")))


def test_the_broad_corpus_is_the_summaries_and_every_address():
    wikipedia = corpus.read_builtin_documents()
    broad = corpus.read_broad_documents()
    speeches = broad[len(wikipedia):]
    assert broad[:len(wikipedia)] == wikipedia and len(speeches) == 249
    assert speeches[0][0] == "Fellow-Citizens of the Senate and House of Representatives:"
    # The package's own metadata counts 2,019,452 words; the audience notes dropped here
    # ([Applause], [Laughter], ...) are a few hundred of them.
    words = sum(len(s.split()) for d in speeches for s in d)
    assert 2_018_000 < words <= 2_019_452
    assert not any(re.search(r"\[(applause|laughter)\]", s, re.IGNORECASE)
                   for d in speeches for s in d)
