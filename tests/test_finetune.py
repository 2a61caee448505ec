"""Fine-tuning (trainers.bert.finetune): it starts from what pretraining trained, wherever that
is given from, trains and evaluates on the runner, resumes exactly, reads tables as GLUE's are
written, and Model Garden's own fine-tuning task accepts our export."""

import csv
import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml
from official.nlp.configs import encoders
from official.nlp.tasks import sentence_prediction

from tests import bert_runs
from trainers import params_record
from trainers import config as config_lib
from trainers import runner
from trainers.bert import export
from trainers.bert.task import BertPretrainingTask
from trainers.bert.finetune import builtin_tasks
from trainers.bert.finetune import data as data_lib
from trainers.bert.finetune.config import (ClassificationDataConfig,
                                           ClassificationExperimentConfig)
from trainers.bert.finetune.task import ClassificationTask, resolve_pretrained
from trainers.data import positions

# On one pytest-xdist worker: the pretraining run is made once, not on each.
pytestmark = pytest.mark.xdist_group("finetune")

NUM_DOCUMENTS = 40  # of tests.synthetic_text's corpus


def _write_table(path, rows, header=("sentence", "label"), delimiter="\t"):
    with open(path, "w") as f:
        f.write(delimiter.join(header) + "\n")
        for row in rows:
            f.write(delimiter.join(row) + "\n")
    return path


def _topic_rows(rng, count):
    """Sentences of the synthetic corpus's words, labelled by the half their document is in."""
    rows = []
    for _ in range(count):
        document = rng.randrange(NUM_DOCUMENTS)
        words = " ".join(f"d{document}w{rng.randrange(40)}" for _ in range(rng.randrange(3, 12)))
        rows.append((words, "early" if document < NUM_DOCUMENTS // 2 else "late"))
    return rows


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    data_dir, model_dir, trained = bert_runs.pretrain(str(root))
    export_dir = str(root / "export")
    export.export(model_dir, export_dir)
    rng = random.Random(3)
    tables = {split: _write_table(str(root / f"{split}.tsv"), _topic_rows(rng, count))
              for split, count in (("train", 96), ("dev", 24))}
    return {"model_dir": model_dir, "export": export_dir, "trained": trained,
            "data_dir": data_dir, "tables": tables, "root": root}


def _experiment(pretrained, init_checkpoint, num_train_steps=4, run=None, **task):
    """The resolved fine-tuning config (`run`: the model_dir it will train in)."""
    settings = {
        "task": dict({"train_data": {"input_path": pretrained["tables"]["train"],
                                     "max_seq_length": bert_runs.SEQ},
                      "eval_data": {"input_path": pretrained["tables"]["dev"],
                                    "max_seq_length": bert_runs.SEQ},
                      "model": {"dropout_rate": 0.0, "attention_dropout_rate": 0.0}}, **task),
        "trainer": {"train_batch_size": 8, "eval_batch_size": 8,
                    "num_train_steps": num_train_steps,
                    "iterations_per_loop": 2, "save_checkpoints_steps": 2,
                    "init_checkpoint": init_checkpoint},
        "optimizer": {"name": "adamw", "learning_rate": 1e-3, "num_warmup_steps": 1},
    }
    experiment = config_lib.merge(ClassificationExperimentConfig(), settings)
    if run is None:
        resolve_pretrained(experiment)
    else:
        resolve_pretrained(experiment, run)
    return experiment


def _inputs(vocab_size, seq=bert_runs.SEQ):
    rng = np.random.default_rng(5)
    mask = np.ones((3, seq), np.int32)
    mask[1, seq // 2:] = 0
    return {"input_word_ids": rng.integers(0, vocab_size, (3, seq)).astype(np.int32),
            "input_mask": mask, "input_type_ids": np.zeros((3, seq), np.int32)}


def _source(pretrained, kind):
    if kind == "checkpoint":
        return tf.train.latest_checkpoint(pretrained["model_dir"])
    return pretrained["model_dir" if kind == "model_dir" else "export"]


def _initialized_and_trained_outputs(pretrained, experiment):
    """The sequence outputs of the fine-tuning encoder after `initialize`, and of the trained
    pretrainer's encoder, on the same inputs."""
    task = ClassificationTask(experiment.task)
    model = task.build_model()
    task.initialize(model, experiment.trainer.init_checkpoint)
    inputs = _inputs(experiment.task.model.vocab_size)
    expected = pretrained["trained"].encoder_network(inputs, training=False)["sequence_output"]
    got = model.checkpoint_items["encoder"](inputs, training=False)["sequence_output"]
    return got.numpy(), expected.numpy()


@pytest.mark.parametrize("kind", ["model_dir", "checkpoint", "export"])
def test_the_encoder_starts_from_the_pretrained_weights(pretrained, kind):
    experiment = _experiment(pretrained, _source(pretrained, kind))
    assert experiment.task.model.size == "tiny"
    assert experiment.task.do_lower_case is True
    assert experiment.task.labels == ["early", "late"]
    with open(experiment.task.vocab_file) as f, \
            open(os.path.join(pretrained["data_dir"], "vocab.txt")) as expected:
        assert f.read() == expected.read()
    got, expected = _initialized_and_trained_outputs(pretrained, experiment)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_random_init_keeps_the_architecture_but_not_the_weights(pretrained):
    experiment = _experiment(pretrained, pretrained["export"], random_init=True)
    got, expected = _initialized_and_trained_outputs(pretrained, experiment)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() > 0.1


@pytest.mark.parametrize("kind", ["model_dir", "export"])
def test_init_cls_pooler_starts_the_head_from_the_next_sentence_pooler(pretrained, kind):
    head = next(h for h in pretrained["trained"].classification_heads
                if h.name == "next_sentence")
    trained_kernel, trained_bias = (w.numpy() for w in head.dense.weights)
    poolers = {}
    for init_cls_pooler in (True, False):
        experiment = _experiment(pretrained, _source(pretrained, kind),
                                 init_cls_pooler=init_cls_pooler)
        task = ClassificationTask(experiment.task)
        model = task.build_model()
        task.initialize(model, experiment.trainer.init_checkpoint)
        poolers[init_cls_pooler] = [
            w.numpy() for w in model.checkpoint_items["sentence_prediction.pooler_dense"].weights]
    np.testing.assert_array_equal(poolers[True][0], trained_kernel)
    np.testing.assert_array_equal(poolers[True][1], trained_bias)
    assert np.abs(poolers[False][0] - trained_kernel).max() > 0.01  # the default: a fresh one


@pytest.mark.parametrize("init_checkpoint, random_init", [("", False), ("export", True)])
def test_init_cls_pooler_without_a_pretrained_pooler_is_refused(pretrained, init_checkpoint,
                                                                random_init):
    with pytest.raises(ValueError, match="init_cls_pooler.*needs --init_checkpoint and "
                                         "task.random_init=false"):
        _experiment(pretrained, pretrained.get(init_checkpoint, ""), init_cls_pooler=True,
                    random_init=random_init)


def test_continuing_a_pretraining_run_on_data_of_another_vocab_is_refused(pretrained,
                                                                          tmp_path):
    data = shutil.copytree(pretrained["data_dir"], tmp_path / "data")
    tokens = (data / "vocab.txt").read_text().split("\n")
    task = BertPretrainingTask(bert_runs.experiment(str(data)).task)
    model = task.build_model()
    task.initialize(model, pretrained["model_dir"])  # the same vocab: continues
    (data / "vocab.txt").write_text("\n".join(tokens[:5] + tokens[6:] + tokens[5:6]))
    task = BertPretrainingTask(bert_runs.experiment(str(data)).task)
    with pytest.raises(ValueError, match="another: token ids would mean other words"):
        task.initialize(model, pretrained["model_dir"])


def test_continuing_on_data_of_another_vocab_given_as_task_vocab_file_is_refused(pretrained,
                                                                                tmp_path):
    # Shards with no vocab beside them (another tool's); the vocab comes from task.vocab_file.
    data = shutil.copytree(pretrained["data_dir"], tmp_path / "data")
    tokens = (data / "vocab.txt").read_text().split("\n")
    reordered = tmp_path / "reordered_vocab.txt"
    reordered.write_text("\n".join(tokens[:5] + tokens[6:] + tokens[5:6]))
    experiment = bert_runs.experiment(str(data))
    (data / "vocab.txt").unlink()
    experiment.task.vocab_file = str(data.parent / "same_vocab.txt")
    shutil.copy(os.path.join(pretrained["data_dir"], "vocab.txt"), experiment.task.vocab_file)
    task = BertPretrainingTask(experiment.task)
    model = task.build_model()
    task.initialize(model, pretrained["model_dir"])  # the same vocab: continues
    experiment.task.vocab_file = str(reordered)
    task = BertPretrainingTask(experiment.task)
    with pytest.raises(ValueError, match="another: token ids would mean other words"):
        task.initialize(model, pretrained["model_dir"])


def _train_stream(pretrained, input_path):
    experiment = _experiment(pretrained, pretrained["export"],
                             train_data={"input_path": input_path,
                                         "max_seq_length": bert_runs.SEQ})
    return ClassificationTask(experiment.task).train_stream()


def test_the_bbc_news_stream_is_a_few_lines_wherever_the_corpus_is_installed(
        pretrained, tmp_path, monkeypatch):
    stream = _train_stream(pretrained, "bbc_news:train")
    record = yaml.safe_dump({params_record.STREAM_KEY: stream}, default_flow_style=None)
    assert len(record.splitlines()) <= 3, record
    assert stream["table"]["examples"] == len(data_lib.bbc_news("train").texts)
    # The package installed under another prefix (a new venv): the same stream.
    bbc = builtin_tasks.TASKS["bbc_news"]
    moved = shutil.copytree(builtin_tasks._data_folder(bbc), tmp_path / "venv_b" / "bbc")
    monkeypatch.setattr(builtin_tasks, "_data_folder", lambda task: str(moved))
    builtin_tasks._splits.cache_clear()  # read the moved copy, not the splits already read
    try:
        assert data_lib.bbc_news("train").sources[0].startswith(str(moved))
        assert params_record._stream_differences(
            stream, _train_stream(pretrained, "bbc_news:train")) == []
    finally:
        monkeypatch.undo()
        builtin_tasks._splits.cache_clear()


def test_a_table_stream_moves_with_the_table_and_changes_with_a_row(pretrained, tmp_path):
    train_table = pretrained["tables"]["train"]
    stream = _train_stream(pretrained, train_table)
    moved = shutil.copy(train_table, str(tmp_path / "moved.tsv"))
    assert params_record._stream_differences(stream, _train_stream(pretrained, moved)) == []
    header, *rows = open(train_table).read().splitlines()
    text, label = rows[0].split("\t")
    rows[0] = "\t".join([text, "late" if label == "early" else "early"])
    changed = _write_table(str(tmp_path / "changed.tsv"), [row.split("\t") for row in rows])
    differences = params_record._stream_differences(stream, _train_stream(pretrained, changed))
    assert len(differences) == 1 and differences[0].startswith("table ")


def test_fine_tuning_from_an_export_trains_evaluates_and_resumes_exactly(pretrained, tmp_path):
    experiment = _experiment(pretrained, pretrained["export"])
    whole = str(tmp_path / "whole")
    results = runner.run(ClassificationTask(experiment.task), experiment, whole,
                         "train_and_eval")
    assert set(results) == {"accuracy", "loss"} and np.isfinite(results["loss"])
    # The same run stopped after its first save and resumed: the same weights at the end.
    halves = str(tmp_path / "halves")
    first = _experiment(pretrained, pretrained["export"])
    first.trainer.num_train_steps = 2
    runner.run(ClassificationTask(first.task), first, halves, "train")
    second = _experiment(pretrained, pretrained["export"])
    runner.run(ClassificationTask(second.task), second, halves, "train")
    expected = bert_runs.model_weights(os.path.join(whole, "ckpt-4"))
    got = bert_runs.model_weights(os.path.join(halves, "ckpt-4"))
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_the_command_fine_tunes_a_pretraining_model_dir(pretrained, tmp_path):
    """As a user runs it after README command 1: the model_dir as --init_checkpoint."""
    tables = pretrained["tables"]
    code = subprocess.run(
        [sys.executable, "-m", "trainers.bert.finetune", "--mode=train_and_eval",
         f"--init_checkpoint={pretrained['model_dir']}", f"--model_dir={tmp_path / 'run'}",
         "--train_batch_size=8", "--eval_batch_size=8", "--num_train_steps=2",
         "--iterations_per_loop=2", "--save_checkpoints_steps=2",
         f"--params_override=task.train_data.input_path={tables['train']},"
         f"task.eval_data.input_path={tables['dev']},"
         f"task.train_data.max_seq_length={bert_runs.SEQ},"
         f"task.eval_data.max_seq_length={bert_runs.SEQ},optimizer.name=lamb"],
        cwd=bert_runs.REPO, capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert code.returncode == 0, code.stderr[-3000:]
    assert "eval: accuracy=" in code.stdout
    params = config_lib.load_yaml(str(tmp_path / "run" / "params.yaml"))
    assert params["task"]["labels"] == ["early", "late"]
    assert params["task"]["model"]["size"] == "tiny"


def test_model_garden_sentence_prediction_accepts_the_export(pretrained):
    export_dir = pretrained["export"]
    encoder = encoders.EncoderConfig.from_yaml(os.path.join(export_dir, "encoder_config.yaml"))
    config = sentence_prediction.SentencePredictionConfig(
        init_checkpoint=os.path.join(export_dir, "bert_model.ckpt"), init_cls_pooler=True,
        model=sentence_prediction.ModelConfig(num_classes=2, encoder=encoder))
    task = sentence_prediction.SentencePredictionTask(config)
    model = task.build_model()
    task.initialize(model)  # raises unless every encoder and pooler variable was found
    trained = pretrained["trained"]
    inputs = _inputs(encoder.get().vocab_size)
    expected = trained.encoder_network(inputs, training=False)["sequence_output"]
    got = model.checkpoint_items["encoder"](inputs, training=False)["sequence_output"]
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    head = next(h for h in trained.classification_heads if h.name == "next_sentence")
    for got_weight, expected_weight in zip(
            model.checkpoint_items["sentence_prediction.pooler_dense"].get_weights(),
            head.dense.get_weights()):
        np.testing.assert_array_equal(got_weight, expected_weight)


def test_a_vocab_that_is_not_the_checkpoints_is_refused(pretrained, tmp_path):
    other = tmp_path / "other_vocab.txt"
    vocab = open(os.path.join(pretrained["data_dir"], "vocab.txt")).read().split("\n")
    other.write_text("\n".join(vocab[:5] + list(reversed(vocab[5:]))))
    with pytest.raises(ValueError, match=r"is not the vocab .* was pretrained with"):
        _experiment(pretrained, pretrained["export"], vocab_file=str(other))


def test_a_vocab_larger_than_the_embedding_is_refused(pretrained, tmp_path):
    bigger = tmp_path / "vocab.txt"
    vocab = open(os.path.join(pretrained["data_dir"], "vocab.txt")).read().split()
    bigger.write_text("\n".join(vocab + [f"extra{i}" for i in range(5000)]))
    with pytest.raises(ValueError, match=r"has \d+ tokens but the encoder's embedding has"):
        _experiment(pretrained, "", vocab_file=str(bigger), do_lower_case=True,
                    model={"size": "tiny", "vocab_size": len(vocab)})


# ------------------------------------------- vocab and casing recorded in the model_dirs
def _moved_run(pretrained, tmp_path, keep_records):
    """A copy of the pretraining model_dir whose training data has moved away (params.yaml
    names a folder that no longer exists), with or without the vocab and casing it records
    (without: as a run on google-research/bert's shards, which carry neither)."""
    moved = str(tmp_path / "moved_run")
    shutil.copytree(pretrained["model_dir"], moved)
    params_path = os.path.join(moved, "params.yaml")
    params = config_lib.load_yaml(params_path)
    for data in ("train_data", "eval_data"):
        params["task"][data]["input_path"] = str(tmp_path / "gone" / "train-*")
    with open(params_path, "w") as f:
        yaml.safe_dump(params, f)
    if not keep_records:
        os.remove(os.path.join(moved, "vocab.txt"))
        os.remove(os.path.join(moved, "tokenization.json"))
    return moved


def test_a_pretraining_run_records_the_vocab_and_casing_of_its_data(pretrained):
    model_dir, data_dir = pretrained["model_dir"], pretrained["data_dir"]
    with open(os.path.join(model_dir, "vocab.txt")) as f, \
            open(os.path.join(data_dir, "vocab.txt")) as expected:
        assert f.read() == expected.read()
    with open(os.path.join(model_dir, "tokenization.json")) as f:
        assert json.load(f)["do_lower_case"] is True  # create_pretraining_data's default


def test_fine_tuning_reads_the_recorded_vocab_after_the_data_moved(pretrained, tmp_path):
    experiment = _experiment(pretrained, _moved_run(pretrained, tmp_path, keep_records=True))
    assert experiment.task.vocab_file == str(tmp_path / "moved_run" / "vocab.txt")
    assert experiment.task.do_lower_case is True
    got, expected = _initialized_and_trained_outputs(pretrained, experiment)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_without_a_recorded_vocab_task_vocab_file_is_used_or_asked_for(pretrained, tmp_path):
    moved = _moved_run(pretrained, tmp_path, keep_records=False)
    with pytest.raises(ValueError, match=r"moved_run records no vocab .*: set "
                                         r"task\.vocab_file to the vocab that data was made"):
        _experiment(pretrained, moved)
    vocab = os.path.join(pretrained["data_dir"], "vocab.txt")
    experiment = _experiment(pretrained, moved, vocab_file=vocab, do_lower_case=True)
    assert experiment.task.vocab_file == vocab
    got, expected = _initialized_and_trained_outputs(pretrained, experiment)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_pretraining_on_shards_without_a_vocab_records_task_vocab_file(pretrained, tmp_path):
    # google-research/bert's shards: TFRecords and nothing beside them.
    shards = tmp_path / "shards"
    shards.mkdir()
    for name in os.listdir(pretrained["data_dir"]):
        if name.endswith(".tfrecord"):
            shutil.copy(os.path.join(pretrained["data_dir"], name), shards / name)
    vocab = os.path.join(pretrained["data_dir"], "vocab.txt")
    experiment = bert_runs.experiment(pretrained["data_dir"], task={
        "train_data": {"input_path": str(shards / "train-*")},
        "eval_data": {"input_path": str(shards / "eval-*")}})
    assert BertPretrainingTask(experiment.task).model_dir_records() == {}  # nothing known
    experiment.task.vocab_file, experiment.task.do_lower_case = vocab, False
    records = BertPretrainingTask(experiment.task).model_dir_records()
    assert records["vocab.txt"] == open(vocab).read()
    assert json.loads(records["tokenization.json"]) == {"do_lower_case": False}


def test_resuming_and_evaluating_a_fine_tuning_run_need_no_pretraining_run(pretrained,
                                                                            tmp_path):
    source = str(tmp_path / "source")
    shutil.copytree(pretrained["model_dir"], source)
    run = str(tmp_path / "run")

    def experiment(num_train_steps):
        return _experiment(pretrained, source, num_train_steps=num_train_steps, run=run)

    first = experiment(2)
    runner.run(ClassificationTask(first.task), first, run, "train")
    shutil.rmtree(source)  # deleted, as a pretraining run may be once it is fine-tuned
    second = experiment(4)
    assert second.task.vocab_file == os.path.join(run, "vocab.txt")
    assert second.task.model == first.task.model and second.task.labels == first.task.labels
    runner.run(ClassificationTask(second.task), second, run, "train")
    assert tf.train.latest_checkpoint(run).endswith("ckpt-4")
    evaluation = experiment(4)
    results = runner.run(ClassificationTask(evaluation.task), evaluation, run, "eval")
    assert np.isfinite(results["loss"])


def _recorded_run(tmp_path, labels):
    """A fine-tuning model_dir as resume_from_records sees it: a checkpoint's index file, the
    vocab copy and params.yaml recording `labels`."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt-2.index").write_text("")
    (run / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    recorded = ClassificationExperimentConfig()
    recorded.task.vocab_file, recorded.task.do_lower_case = str(run / "vocab.txt"), True
    recorded.task.labels = list(labels)
    (run / "params.yaml").write_text(yaml.safe_dump(config_lib.to_dict(recorded)))
    return str(run)


def test_a_resume_refuses_labels_in_another_order(tmp_path):
    run = _recorded_run(tmp_path, ["neg", "pos"])
    same = config_lib.merge(ClassificationExperimentConfig(), {"task": {"labels": ["neg", "pos"]}})
    resolve_pretrained(same, run)
    assert same.task.labels == ["neg", "pos"]
    other = config_lib.merge(ClassificationExperimentConfig(),
                             {"task": {"labels": ["pos", "neg"]}})
    with pytest.raises(ValueError, match=r"^task\.labels \['pos', 'neg'\] but the checkpoints in "
                                         r".* were trained with \['neg', 'pos'\] \(the order "
                                         r"fixes the class ids\); leave it empty\.$"):
        resolve_pretrained(other, run)


# ------------------------------------------------------------------------------ data
def _data_config(path, **columns):
    return config_lib.merge(ClassificationDataConfig(), dict({"input_path": path}, **columns))


def test_a_glue_tsv_keeps_quotes_and_a_csv_reads_quoted_commas(tmp_path):
    tsv = _write_table(str(tmp_path / "a.tsv"), [('he said "no" , twice', "1")])
    examples = data_lib.read(_data_config(tsv))
    assert examples.texts == ['he said "no" , twice'] and examples.labels == ["1"]
    csv_path = tmp_path / "b.csv"
    csv_path.write_text('premise,hypothesis,gold\n"a, b",c,entailment\n')
    examples = data_lib.read(_data_config(str(csv_path), text_column="premise",
                                          text_b_column="hypothesis", label_column="gold"))
    assert (examples.texts, examples.texts_b, examples.labels) == (["a, b"], ["c"],
                                                                   ["entailment"])


@pytest.mark.parametrize("content, columns, message", [
    ("text\tlabel\nx\t1\n", {}, r"has no column 'sentence' \(its header: \['text', 'label'\]\)"),
    ("sentence\tlabel\nx\t1\textra\n", {}, r"line 2: 3 fields where the header has 2"),
    ("sentence\tlabel\n", {}, r"holds no examples below its header"),
])
def test_a_table_that_does_not_fit_the_config_is_named(tmp_path, content, columns, message):
    path = tmp_path / "t.tsv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        data_lib.read(_data_config(str(path), **columns))


def _pack_reference(a, b, max_len):
    """google-research/bert run_classifier's _truncate_seq_pair and segment ids, by hand."""
    a, b = list(a), list(b or [])
    limit = max_len - 3 if b else max_len - 2
    while len(a) + len(b) > limit:
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()
    tokens = ["C"] + a + ["S"] + (b + ["S"] if b else [])
    segments = [0] * (len(a) + 2) + [1] * (len(b) + 1 if b else 0)
    return tokens, segments


@pytest.mark.parametrize("len_a, len_b", [(3, None), (20, None), (9, 9), (15, 2), (2, 15),
                                          (6, 7)])
def test_packing_truncates_as_google_research_bert(len_a, len_b):
    a = [f"a{i}" for i in range(len_a)]
    b = None if len_b is None else [f"b{i}" for i in range(len_b)]
    words, types = data_lib.pack(a, b, 12, "C", "S")
    assert (words, types) == _pack_reference(a, b, 12)


def test_an_unknown_label_is_named_with_its_line(tmp_path):
    path = _write_table(str(tmp_path / "t.tsv"), [("a b", "pos"), ("c", "neutral")])
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]
    with pytest.raises(ValueError, match=r"t\.tsv, line 3: label 'neutral' is not one of"):
        data_lib.ClassificationInput(data_lib.read(_data_config(path)), vocab, True,
                                     ["neg", "pos"], 8)


def test_training_batches_resume_after_their_position(tmp_path):
    path = _write_table(str(tmp_path / "t.tsv"), [(f"w{i}", str(i % 2)) for i in range(13)])
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(13)]
    data = data_lib.ClassificationInput(data_lib.read(_data_config(path)), vocab, True,
                                        ["0", "1"], 4)
    batches = list(data.train_dataset(4, seed=7).take(9).as_numpy_iterator())
    words = [b["input_word_ids"][:, 1] for b in batches]
    # Every epoch holds each example once.
    stream = np.concatenate(words)
    for epoch in range(2):
        assert sorted(stream[13 * epoch:13 * (epoch + 1)]) == list(range(5, 18))
    # From the position of the last record of batch 4 on, the same batches follow.
    after = tuple(batches[4][positions.POSITION_KEY][-1])
    resumed = list(data.train_dataset(4, seed=7, after=after).take(4).as_numpy_iterator())
    for got, expected in zip(resumed, batches[5:]):
        np.testing.assert_array_equal(got["input_word_ids"], expected["input_word_ids"])


def test_eval_batches_hold_every_example_once_with_padding_flagged(tmp_path):
    path = _write_table(str(tmp_path / "t.tsv"), [(f"w{i}", str(i % 2)) for i in range(7)])
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(7)]
    data = data_lib.ClassificationInput(data_lib.read(_data_config(path)), vocab, True,
                                        ["0", "1"], 4)
    batches = list(data.eval_dataset(4).as_numpy_iterator())
    assert len(batches) == data.eval_steps(4) == 2
    real = np.concatenate([b["is_real_example"] for b in batches])
    words = np.concatenate([b["input_word_ids"][:, 1] for b in batches])
    assert real.tolist() == [1] * 7 + [0]
    assert sorted(words[:7]) == list(range(5, 12))


def test_bbc_news_splits_are_fixed_disjoint_and_free_of_duplicates():
    splits = {split: data_lib.bbc_news(split) for split in data_lib.BBC_NEWS_SPLITS}
    sizes = {split: len(examples.texts) for split, examples in splits.items()}
    # 2,225 articles less 100 repeats (98 byte for byte, 2 more up to whitespace); 80/10/10 of
    # each topic's 503, 369, 403, 503 and 347, rounded.
    assert sizes == {"train": 1699, "dev": 212, "test": 214}
    texts = [set(examples.texts) for examples in splits.values()]
    assert sum(len(t) for t in texts) == 2125 == len(set.union(*texts))
    assert sorted(set(splits["test"].labels)) == data_lib.bbc_news_labels() == [
        "business", "entertainment", "politics", "sports", "tech"]
    again = data_lib.bbc_news("test")
    assert again.texts == splits["test"].texts


def _run_finetune_study_and_check_rows(pretrained, tmp_path, sizes, *flags, seeded=None):
    """The rows of `python -m benchmarks.finetune_study *flags` run on the fixture's encoder at
    one rate and seed: one for it and one for random weights of its shape, each accuracy a whole
    number of answers out of `sizes` ({"dev_accuracy": dev examples, "test_accuracy": ...}),
    and the markdown table written beside `--output`, which holds the encoder's row. A `seeded`
    row, written to `--output` first, must be kept as it is and not run again, as a resumed
    study does."""
    output = next(f.split("=", 1)[1] for f in flags if f.startswith("--output="))
    if seeded:
        with open(output, "w", newline="") as f:
            writer = csv.DictWriter(f, list(seeded))
            writer.writeheader()
            writer.writerow(seeded)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.finetune_study",
         f"--init_checkpoint={pretrained['model_dir']}", "--learning_rates=1e-3", "--seeds=1",
         f"--work_dir={tmp_path / 'work'}", *flags],
        cwd=bert_runs.REPO, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                 PYTHONPATH=bert_runs.REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(open(output)))
    label = os.path.basename(pretrained["model_dir"])
    inits = [label, f"random ({label}'s shape)"]
    if seeded:  # first in the file, the other appended
        inits.remove(seeded["init"])
        inits.insert(0, seeded["init"])
    assert [r["init"] for r in rows] == inits
    if seeded:
        assert rows[0] == seeded and f"{seeded['init']} rate 1e-3 seed 1" not in done.stdout
    for row in rows[1 if seeded else 0:]:
        for key, size in sizes.items():
            correct = float(row[key]) * size
            assert abs(correct - round(correct)) < size * 5e-5, (key, row[key])
    table = open(os.path.splitext(output)[0] + ".md").read()
    assert f"| {label} | 1e-3 |" in table
    return rows, table


def test_the_finetune_study_runs_a_built_in_task_by_name_from_init_checkpoint(pretrained,
                                                                             tmp_path):
    """benchmarks.finetune_study --task=reuters_r8, cut to 2 updates per run: the row it runs
    is evaluated on the task's own dev and test sets (accuracies in steps of 1/542 and 1/2189).
    The random-weights row is already there, as after a study cut short, so only the encoder
    runs (random weights run end to end: the test on your own tables below)."""
    output = tmp_path / "r8.csv"
    label = os.path.basename(pretrained["model_dir"])
    seeded = {"init": f"random ({label}'s shape)", "learning_rate": "1e-3", "seed": "1",
              "dev_accuracy": "0.25", "test_accuracy": "0.25"}
    shrink = ",".join(["task.train_data.max_seq_length=32", "task.eval_data.max_seq_length=32",
                       "trainer.num_train_steps=2", "trainer.iterations_per_loop=2",
                       "trainer.save_checkpoints_steps=2", "optimizer.num_warmup_steps=1"])
    _, table = _run_finetune_study_and_check_rows(
        pretrained, tmp_path, {"dev_accuracy": 542, "test_accuracy": 2189},
        "--task=reuters_r8", f"--params_override={shrink}", f"--output={output}",
        "--tfidf_words=1", seeded=seeded)
    assert "| TF-IDF + logistic regression, first 1 words (no encoder) | C=" in table


def test_the_finetune_study_names_the_built_in_tasks_when_given_another():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.finetune_study", "--task=reuters",
         "--init_checkpoint=unused"], cwd=bert_runs.REPO, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: --task=reuters: no such built-in task; choose one of ['bbc_news', "
        "'reuters_r8', 'health_tweets', 'tweet_sentiment'].")


def test_the_finetune_study_runs_on_your_own_tables(pretrained, tmp_path):
    """benchmarks.finetune_study on the fixture's own tables instead of a built-in task: each
    row is evaluated on those tables' dev (24 rows) and test (29 rows) sets, for 1 epoch."""
    tables = pretrained["tables"]
    test_table = _write_table(str(tmp_path / "test.tsv"), _topic_rows(random.Random(5), 29))
    output = tmp_path / "mine.csv"
    rows, table = _run_finetune_study_and_check_rows(
        pretrained, tmp_path, {"dev_accuracy": 24, "test_accuracy": 29},
        f"--train_data={tables['train']}", f"--dev_data={tables['dev']}",
        f"--test_data={test_table}", "--epochs=1", f"--max_seq_length={bert_runs.SEQ}",
        f"--output={output}", "--tfidf_words=0")
    for row in rows:
        # Neither 0 nor 1 (the seeded tables hold both labels and 3 updates learn little), so
        # a multiple of 1/24 is not one of 1/29: dev and test were not swapped.
        assert 0 < float(row["dev_accuracy"]) < 1 and 0 < float(row["test_accuracy"]) < 1, row
    assert "| TF-IDF + logistic regression, whole texts (no encoder) | C=" in table
