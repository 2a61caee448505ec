"""What a TPU needs of the training step, checked without one: the BERT and ResNet steps as
TPUStrategy runs them (the whole update compiled by XLA, fed by the tasks' input pipelines)
have fully static shapes, no host callbacks or transfers, and nothing XLA cannot compile."""

import pytest
import tensorflow as tf

from tests import bert_runs, compiled
from tests.test_image_data import class_folder  # noqa: F401  (fixture)
from tests.test_resnet_task import experiment as resnet_experiment
from trainers import runner
from trainers.bert.task import BertPretrainingTask
from trainers.data import images_to_tfrecords as converter
from trainers.resnet.task import ResNetTask


@pytest.fixture(scope="module")
def bert_data(tmp_path_factory):
    return bert_runs.make_data(str(tmp_path_factory.mktemp("tpu_bert")))


def assert_tpu_ready(step_runner):
    spec = step_runner.train_input.dataset().element_spec
    for name, tensor_spec in spec.items():
        assert tensor_spec.shape.is_fully_defined(), (name, tensor_spec)
        assert tensor_spec.dtype != tf.string, name
    hlo, _ = compiled.train_step_hlo(step_runner)  # raises if XLA cannot compile an op
    assert "[<=" not in hlo, "a dynamic (bounded) dimension"
    assert not compiled.HOST_OPS.search(hlo), compiled.HOST_OPS.search(hlo).group(0)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_the_bert_step_compiles_whole_with_static_shapes(bert_data, tmp_path, accumulation):
    experiment = bert_runs.experiment(bert_data, trainer={"num_accumulation_steps": accumulation},
                                      runtime={"jit_compile": True})
    assert_tpu_ready(runner.Runner(BertPretrainingTask(experiment.task), experiment,
                                   str(tmp_path)))


def test_the_resnet_step_compiles_whole_with_static_shapes(class_folder, tmp_path):  # noqa: F811
    images, classes = converter.images_from_folder(str(class_folder))
    converter.write_shards(images, classes, str(tmp_path / "shards"), "train", 2)
    experiment = resnet_experiment(str(tmp_path / "shards" / "train-*"))
    experiment.runtime.jit_compile = True
    assert_tpu_ready(runner.Runner(ResNetTask(experiment.task), experiment, str(tmp_path / "run")))
