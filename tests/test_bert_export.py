"""The exported encoder loads where fine-tuning tools load it, with the trained outputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from official.nlp.configs import encoders

from tests import bert_runs
from trainers.bert import export


# On one pytest-xdist worker: the exported pretraining run is made once, not on each.
pytestmark = pytest.mark.xdist_group("bert_export")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data_dir, model_dir, trained = bert_runs.pretrain(str(root))
    output_dir = str(root / "exported")
    code = subprocess.run(
        [sys.executable, "-m", "trainers.bert.export", f"--model_dir={model_dir}",
         f"--output_dir={output_dir}"], cwd=bert_runs.REPO, capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert code.returncode == 0, code.stderr
    return trained, data_dir, output_dir


def _inputs(vocab_size, seq=bert_runs.SEQ):
    rng = np.random.default_rng(5)
    mask = np.ones((3, seq), np.int32)
    mask[1, seq // 2:] = 0
    return {"input_word_ids": rng.integers(0, vocab_size, (3, seq)).astype(np.int32),
            "input_mask": mask,
            "input_type_ids": (np.arange(seq)[None, :] >= seq // 3).astype(np.int32)
            .repeat(3, 0)}


def _expected(trained, inputs):
    """Trained encoder's sequence output, and the next-sentence head's pooler on [CLS]."""
    outputs = trained.encoder_network(inputs, training=False)
    head = next(h for h in trained.classification_heads if h.name == "next_sentence")
    sequence = outputs["sequence_output"].numpy()
    return sequence, head.dense(sequence[:, 0, :]).numpy()


def test_model_garden_encoder_built_from_the_export_gives_the_trained_outputs(exported):
    trained, _, output_dir = exported
    config = encoders.EncoderConfig.from_yaml(os.path.join(output_dir, "encoder_config.yaml"))
    fresh = encoders.build_encoder(config)
    assert type(fresh).__name__ == "BertEncoderV2"
    # What Model Garden's fine-tuning tasks do with `init_checkpoint`.
    tf.train.Checkpoint(encoder=fresh).read(os.path.join(output_dir, "bert_model.ckpt")) \
        .expect_partial().assert_existing_objects_matched()
    inputs = _inputs(config.get().vocab_size)
    sequence, pooled = _expected(trained, inputs)
    outputs = fresh(inputs, training=False)
    np.testing.assert_allclose(outputs["sequence_output"].numpy(), sequence, atol=1e-5)
    np.testing.assert_allclose(outputs["pooled_output"].numpy(), pooled, atol=1e-5)


def test_saved_model_loads_in_a_fresh_process(exported, tmp_path):
    trained, data_dir, output_dir = exported
    vocab_size = len(open(os.path.join(output_dir, "vocab.txt")).read().split())
    inputs = _inputs(vocab_size)
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = f"""
import numpy as np, tensorflow as tf
inputs = dict(np.load({str(tmp_path / 'inputs.npz')!r}))
loaded = tf.saved_model.load({os.path.join(output_dir, 'saved_model')!r})
outputs = loaded.signatures["serving_default"](**{{k: tf.constant(v) for k, v in inputs.items()}})
np.savez({str(tmp_path / 'outputs.npz')!r}, **{{k: v.numpy() for k, v in outputs.items()}})
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert done.returncode == 0, done.stderr
    outputs = np.load(tmp_path / "outputs.npz")
    sequence, pooled = _expected(trained, inputs)
    np.testing.assert_allclose(outputs["sequence_output"], sequence, atol=1e-5)
    np.testing.assert_allclose(outputs["pooled_output"], pooled, atol=1e-5)


def test_the_vocab_of_the_data_is_exported(exported):
    _, data_dir, output_dir = exported
    assert (open(os.path.join(output_dir, "vocab.txt")).read()
            == open(os.path.join(data_dir, "vocab.txt")).read())


def test_a_non_empty_output_dir_is_refused(exported, tmp_path):
    trained, data_dir, output_dir = exported
    model_dir = os.path.join(os.path.dirname(output_dir), "run")
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty; pass --overwrite"):
        export.export(model_dir, str(tmp_path))
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_an_export_in_process_leaves_logging_as_it_was(exported, tmp_path):
    # tf.saved_model.save sets absl's logger to WARNING; a training run after an in-process
    # export would then log no progress.
    import logging
    _, _, output_dir = exported
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    export.export(os.path.join(os.path.dirname(output_dir), "run"), str(tmp_path / "again"))
    assert absl_logger.level == logging.INFO


@pytest.mark.parametrize("linked", ["model_dir", "output_dir"])
def test_an_output_dir_holding_the_model_dir_through_a_symlink_is_refused(tmp_path, linked):
    # runs -> disk/runs: the model_dir runs/tiny is disk/runs/tiny, which replacing disk/runs
    # (or a link to it) would delete.
    (tmp_path / "disk" / "runs" / "tiny").mkdir(parents=True)
    (tmp_path / "disk" / "runs" / "tiny" / "params.yaml").write_text("{}\n")
    (tmp_path / "runs").symlink_to(tmp_path / "disk" / "runs")
    if linked == "model_dir":
        model_dir, output_dir = tmp_path / "runs" / "tiny", tmp_path / "disk" / "runs"
    else:
        model_dir, output_dir = tmp_path / "disk" / "runs" / "tiny", tmp_path / "runs"
    with pytest.raises(ValueError, match=r"--output_dir .* contains the --model_dir .*; "
                                         r"replacing it would delete the training run"):
        export.export(str(model_dir), str(output_dir), overwrite=True)
    assert (tmp_path / "disk" / "runs" / "tiny" / "params.yaml").exists()


def test_the_recorded_vocab_is_exported_after_the_data_moved(exported, tmp_path):
    import shutil
    import yaml
    _, data_dir, output_dir = exported
    moved = tmp_path / "run"
    shutil.copytree(os.path.join(os.path.dirname(output_dir), "run"), moved)
    params = yaml.safe_load((moved / "params.yaml").read_text())
    params["task"]["train_data"]["input_path"] = str(tmp_path / "gone" / "train-*")
    (moved / "params.yaml").write_text(yaml.safe_dump(params))
    export.export(str(moved), str(tmp_path / "export"))
    assert ((tmp_path / "export" / "vocab.txt").read_text()
            == open(os.path.join(data_dir, "vocab.txt")).read())
    assert json.loads((tmp_path / "export" / "tokenization.json").read_text()) == {
        "do_lower_case": True}
