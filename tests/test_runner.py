"""The runner in-process: distribution and accumulation equalities, NaN handling, bad input."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests import bert_runs, compiled
from tests.conftest import two_device_mirrored_strategy
from trainers import distribution, evaluator, input as input_lib, recovery, runner
from trainers.bert.task import BertPretrainingTask


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bert_runs.make_data(str(tmp_path_factory.mktemp("runner")))


def train(data_dir, model_dir, strategy=None, mode="train", **sections):
    experiment = bert_runs.experiment(data_dir, **sections)
    results = runner.run(BertPretrainingTask(experiment.task), experiment, str(model_dir), mode,
                         strategy=strategy)
    return tf.train.latest_checkpoint(str(model_dir)), results


@pytest.fixture(scope="module")
def one_device(data_dir, tmp_path_factory):
    """The last checkpoint of the default run (LAMB, 4 steps) on one device: what the
    distributed runs must equal."""
    return train(data_dir, tmp_path_factory.mktemp("one_device"),
                 tf.distribute.OneDeviceStrategy("/cpu:0"))[0]


@pytest.fixture(scope="module")
def two_steps(data_dir, tmp_path_factory):
    """The model_dir of the default run cut to 2 steps (the default one-device strategy), for
    tests to copy or read."""
    model_dir = tmp_path_factory.mktemp("two_steps")
    train(data_dir, model_dir, trainer={"num_train_steps": 2})
    return str(model_dir)


def test_mirrored_over_two_devices_equals_one_device_with_momentum_too(data_dir, tmp_path):
    # LAMB's case, the default run's: the input-worker test below. Adam-type updates hardly
    # change when every gradient is scaled by a constant, so a mean-instead-of-sum reduction
    # would slip past LAMB alone.
    one, _ = train(data_dir, tmp_path / "one", tf.distribute.OneDeviceStrategy("/cpu:0"),
                   optimizer={"name": "momentum"})
    two, _ = train(data_dir, tmp_path / "two", two_device_mirrored_strategy(),
                   optimizer={"name": "momentum"})
    assert one.endswith("ckpt-4") and two.endswith("ckpt-4")
    bert_runs.assert_same_weights(one, two, rtol=1e-4, atol=2e-6)


def test_jit_compile_under_mirrored_strategy_trains_as_one_device_does(data_dir, tmp_path,
                                                                      one_device):
    # One tf.function shared by the replicas used to be compiled for the first device and
    # failed on the second replica's variables; now each replica compiles its own pass.
    one = one_device
    two, _ = train(data_dir, tmp_path / "two", two_device_mirrored_strategy(),
                   runtime={"jit_compile": True})
    assert two.endswith("ckpt-4")
    bert_runs.assert_same_weights(one, two, rtol=1e-4, atol=2e-6)


def test_each_input_worker_reads_through_tf_distribute_and_trains_as_one_device(
        data_dir, tmp_path, one_device, monkeypatch):
    # Batches that carry their data position go through tf.distribute's own input
    # (distribute_datasets_from_function: a pipeline per input worker, a TPU pod's hosts,
    # prefetched to the devices), and training is unchanged by it.
    made = []
    real = tf.distribute.MirroredStrategy.distribute_datasets_from_function

    def spy(strategy, dataset_fn, options=None):
        made.append(dataset_fn)
        return real(strategy, dataset_fn, options)

    monkeypatch.setattr(tf.distribute.MirroredStrategy, "distribute_datasets_from_function", spy)
    one = one_device
    two, _ = train(data_dir, tmp_path / "two", two_device_mirrored_strategy())
    assert len(made) == 1  # the mirrored run's training input
    assert one.endswith("ckpt-4") and two.endswith("ckpt-4")
    bert_runs.assert_same_weights(one, two, rtol=1e-4, atol=2e-6)


@pytest.fixture(scope="module")
def batch_32(data_dir, tmp_path_factory):
    """The last checkpoint of the default run at batch 32, without accumulation: what the
    accumulating runs must equal."""
    return train(data_dir, tmp_path_factory.mktemp("batch_32"),
                 trainer={"train_batch_size": 32})[0]


def test_accumulating_four_micro_batches_equals_one_batch_four_times_larger(data_dir, tmp_path,
                                                                             batch_32):
    big = batch_32
    accumulated, _ = train(data_dir, tmp_path / "acc", trainer={
        "train_batch_size": 32, "num_accumulation_steps": 4})
    bert_runs.assert_same_weights(big, accumulated, rtol=1e-4, atol=2e-6)
    # ...and differs from a run that updates on each micro-batch.
    small, _ = train(data_dir, tmp_path / "small", trainer={"train_batch_size": 8,
                                                            "num_train_steps": 16})
    a, b = bert_runs.model_weights(big), bert_runs.model_weights(small)
    assert max(np.abs(a[k] - b[k]).max() for k in a) > 1e-3


def test_accumulation_under_xla_compiles_to_static_micro_batches_and_trains_the_same(
        data_dir, tmp_path, batch_32):
    # TPUs, and --jit_compile, compile the step: each micro-batch must be a static shape, not a
    # slice padded to the whole batch (k-fold compute, no memory saved).
    big = batch_32  # not compiled: the compiled accumulation must equal the plain big batch
    experiment = bert_runs.experiment(
        data_dir, trainer={"train_batch_size": 32, "num_accumulation_steps": 4},
        runtime={"jit_compile": True})
    hlo, _ = compiled.train_step_hlo(runner.Runner(BertPretrainingTask(experiment.task),
                                                   experiment, str(tmp_path / "acc")))
    assert "[<=" not in hlo  # no dynamic (bounded) dimension anywhere
    batch_pads = re.findall(r" pad\(.*padding=(?!0_0x)", hlo)
    assert not batch_pads
    # The micro-batch's 8 sequences of 32 tokens meet the 128-wide dense layers: [256, 128].
    assert "f32[256,128]" in hlo and "f32[1024,128]" not in hlo
    with compiled.executed_graphs() as graphs:  # two loops: see the graph-mode test below
        accumulated, _ = train(data_dir, tmp_path / "acc", trainer={
            "train_batch_size": 32, "num_accumulation_steps": 4}, runtime={"jit_compile": True})
    bert_runs.assert_same_weights(big, accumulated, rtol=1e-4, atol=2e-6)
    assert graphs
    assert not compiled.nodes_of_op(graphs, "TemporaryVariable")


def test_accumulation_in_graph_mode_trains_loop_after_loop_with_no_grappler_temporaries(
        data_dir, tmp_path):
    # A 60,000-word vocabulary puts Grappler's static peak-memory estimate of the loop above 80%
    # of the CPU's nominal 256 MB: its memory optimizer then rewrote AddNs into temporary
    # variables, one was created in the micro-batch loop's exit iteration and never destroyed,
    # and the second loop failed with AlreadyExistsError (40,000 words: no rewrite). Under XLA:
    # the test above.
    with compiled.executed_graphs() as graphs:
        last, _ = train(data_dir, tmp_path, trainer={
            "train_batch_size": 16, "num_accumulation_steps": 2, "num_train_steps": 3,
            "iterations_per_loop": 1, "save_checkpoints_steps": 3},
            task={"model": {"vocab_size": 60000}})
    assert last.endswith("ckpt-3")
    assert graphs
    assert not compiled.nodes_of_op(graphs, "TemporaryVariable")


def test_train_and_eval_reports_the_bert_metrics_its_progress_and_writes_summaries(
        data_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(evaluator, "EVAL_REPORT_SECONDS", 0.0)  # as if each step were slow
    caplog.set_level("INFO")
    _, results = train(data_dir, tmp_path, mode="train_and_eval",
                       trainer={"eval_batch_size": 8, "max_eval_steps": 5})
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("eval: ")]
    # Each of the two evaluations reports the steps done so far after each loop of 2 but its
    # last: 2, then 4 of its 5.
    assert [line.rsplit(" after ", 1)[0] for line in progress] == [
        "eval: 2/5 steps", "eval: 4/5 steps"] * 2
    assert all(re.fullmatch(r"eval: \d/5 steps after \d+ s", line) for line in progress)
    assert set(results) == {"masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
                            "next_sentence_loss", "next_sentence_pooler_saturation"}
    assert 0.0 <= results["masked_lm_accuracy"] <= 1.0 and results["masked_lm_loss"] > 0
    assert os.path.exists(tmp_path / "params.yaml")
    steps_of_tag = {}
    for event_file in tf.io.gfile.glob(str(tmp_path / "train" / "events*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            for value in event.summary.value:
                steps_of_tag.setdefault(value.tag, []).append(event.step)
    assert {"loss", "learning_rate", "gradient_norm", "examples_per_second",
            "trust_ratio"} <= set(steps_of_tag)
    # 4 updates in loops of 2: the first loop traces, so only the second reports throughput.
    assert steps_of_tag["loss"] == [2, 4] and steps_of_tag["examples_per_second"] == [4]
    assert tf.io.gfile.glob(str(tmp_path / "eval" / "events*"))


def test_stop_when_ends_training_at_the_first_checkpoint_whose_eval_it_accepts(
        data_dir, tmp_path):
    experiment = bert_runs.experiment(data_dir, trainer={"num_train_steps": 10})
    trained = runner.Runner(BertPretrainingTask(experiment.task), experiment, str(tmp_path))
    judged = []

    def third_eval(results):
        judged.append((trained.step, results["masked_lm_accuracy"]))
        return len(judged) == 3

    results = trained.train(eval_each_checkpoint=True, stop_when=third_eval)
    assert [step for step, _ in judged] == [2, 4, 6]
    assert trained.step == 6 and results["masked_lm_accuracy"] == judged[-1][1]
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-6")
    with pytest.raises(ValueError, match="needs eval_each_checkpoint=True"):
        trained.train(stop_when=third_eval)

    # Loss-spike recovery saves and evaluates step 0 first; accepting that eval must not stop
    # training before the next save, where there would be no checkpoint of the stopping step.
    experiment = bert_runs.experiment(data_dir, trainer={
        "num_train_steps": 10, "recovery_max_trials": 2, "save_checkpoints_steps": 6})
    model_dir = str(tmp_path / "with_recovery")
    recovering = runner.Runner(BertPretrainingTask(experiment.task), experiment, model_dir)
    judged_steps = []

    def any_eval(results):
        judged_steps.append(recovering.step)
        return True

    recovering.train(eval_each_checkpoint=True, stop_when=any_eval)
    assert judged_steps == [0, 6] and recovering.step == 6
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-6")


def test_warmup_longer_than_training_is_named_by_flag(data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"--num_warmup_steps=10 \(optimizer\.num_warmup_steps\) "
                                         r"is longer than --num_train_steps=4"):
        train(data_dir, tmp_path, optimizer={"num_warmup_steps": 10})


def test_nan_loss_stops_with_the_step_and_the_last_good_checkpoint(data_dir, tmp_path):
    with pytest.raises(runner.NonFiniteLossError) as error:
        train(data_dir, tmp_path, optimizer={"learning_rate": 1e12},
              trainer={"num_train_steps": 40})
    message = str(error.value)
    step = int(re.search(r"became NaN or Inf at step (\d+)", message).group(1))
    latest = tf.train.latest_checkpoint(str(tmp_path))
    if latest is None:
        assert "none (no checkpoint was saved yet)" in message
    else:
        assert latest in message and int(latest.rsplit("-", 1)[1]) < step
        weights = bert_runs.model_weights(latest)
        assert all(np.isfinite(w).all() for w in weights.values())


def test_float16_loss_scaling_skips_non_finite_steps(data_dir, tmp_path):
    latest, _ = train(data_dir, tmp_path, optimizer={"learning_rate": 1e12},
                      runtime={"dtype": "float16"},
                      trainer={"num_train_steps": 8, "iterations_per_loop": 4,
                               "save_checkpoints_steps": 8})
    assert latest.endswith("ckpt-8")
    assert all(np.isfinite(w).all() for w in bert_runs.model_weights(latest).values())
    reader = tf.train.load_checkpoint(latest)
    scale = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
             if "loss_scale" in n and n.endswith("VARIABLE_VALUE") and "counter" not in n]
    assert scale and scale[0] < 2.0 ** 15  # shrunk from its initial value


def test_non_dividing_batch_names_the_nearest_valid_sizes(data_dir, tmp_path):
    with pytest.raises(ValueError, match=re.escape(
            "train_batch_size=15 does not divide across 2 replica(s): it must be a multiple of 2."
            " Nearest valid sizes: 14 or 16.")):
        train(data_dir, tmp_path, two_device_mirrored_strategy(),
              trainer={"train_batch_size": 15})
    with pytest.raises(ValueError, match=re.escape("x 4 accumulation steps: it must be a "
                                                   "multiple of 8. Nearest valid sizes: 16 or 24")):
        train(data_dir, tmp_path, two_device_mirrored_strategy(),
              trainer={"train_batch_size": 20, "num_accumulation_steps": 4})


def test_missing_data_names_the_pattern(data_dir, tmp_path):
    pattern = os.path.join(data_dir, "nothing-*")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{pattern!r} matches no file")):
        train(data_dir, tmp_path, task={"train_data": {"input_path": pattern}})


def test_init_checkpoint_of_another_model_names_the_variable_and_shapes(data_dir, tmp_path):
    other, _ = train(data_dir, tmp_path / "mini", task={"model": {"size": "mini"}},
                     trainer={"num_train_steps": 2})
    with pytest.raises(ValueError, match=r"init_checkpoint .*ckpt-2 does not fit this model: "
                                         r".*shape \(\d+, 256\) .* shape \(\d+, 128\) and name "
                                         r"\S*word_embeddings"):
        train(data_dir, tmp_path / "tiny", trainer={"init_checkpoint": other})


def test_init_checkpoint_loads_weights_but_not_step(data_dir, tmp_path, two_steps):
    phase1 = os.path.join(two_steps, "ckpt-2")
    experiment = bert_runs.experiment(data_dir, trainer={"init_checkpoint": phase1})
    fresh = runner.Runner(BertPretrainingTask(experiment.task), experiment,
                          str(tmp_path / "phase2"))
    fresh._restore_or_initialize(None)  # phase2 is empty: nothing to resume
    assert fresh.step == 0
    reference = BertPretrainingTask(experiment.task).build_model()
    tf.train.Checkpoint(model=reference).read(phase1).expect_partial()
    initial = BertPretrainingTask(experiment.task).build_model()
    for loaded, saved, untrained in zip(fresh.state.model.variables, reference.variables,
                                        initial.variables):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy())
    assert any(not np.array_equal(s.numpy(), u.numpy())
               for s, u in zip(reference.variables, initial.variables))


def test_a_run_already_at_num_train_steps_says_so(data_dir, tmp_path, two_steps, capsys):
    bert_runs.copy_run(two_steps, tmp_path)
    capsys.readouterr()
    train(data_dir, tmp_path, trainer={"num_train_steps": 2})
    assert "Already trained: step 2 of num_train_steps=2" in capsys.readouterr().out


def test_multi_worker_without_tf_config_says_what_is_needed(monkeypatch):
    from trainers.config import RuntimeConfig
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        distribution.make_strategy(RuntimeConfig(distribution_strategy="multi_worker_mirrored"))


def test_model_dir_holding_another_models_checkpoint_is_named(data_dir, tmp_path, two_steps):
    bert_runs.copy_run(two_steps, tmp_path)
    params = (tmp_path / "params.yaml").read_text()
    with pytest.raises(ValueError, match=r"written with another config \(task\.model\.size: "
                                         r"'tiny' -> 'mini'\).*params\.yaml"):
        train(data_dir, tmp_path, task={"model": {"size": "mini"}},
              trainer={"num_train_steps": 4})
    assert (tmp_path / "params.yaml").read_text() == params


def test_checkpoint_of_another_model_without_params_record_is_named(data_dir, tmp_path,
                                                                   two_steps):
    bert_runs.copy_run(two_steps, tmp_path)
    (tmp_path / "params.yaml").unlink()
    with pytest.raises(ValueError, match=r"The checkpoint .*ckpt-2 in model_dir does not fit "
                                         r"this model: .*params\.yaml"):
        train(data_dir, tmp_path, task={"model": {"size": "mini"}},
              trainer={"num_train_steps": 4})


class SpikingBertTask(BertPretrainingTask):
    """Training batches numbered (from 0, as read) in `spikes` get their loss scaled by
    `factor`; those in `skipped` are not read at all."""

    def __init__(self, task_config, spikes=(), factor=1.0, skipped=()):
        super().__init__(task_config)
        self.spikes, self.factor, self.skipped = list(spikes), factor, list(skipped)

    def input_fn(self, mode, global_batch_size, input_context, seed=None, after=None):
        dataset = super().input_fn(mode, global_batch_size, input_context, seed, after)
        if mode != "train":
            return dataset

        def among(index, numbers):
            return tf.reduce_any(tf.equal(index, tf.constant(numbers + [-1], tf.int64)))

        def mark(index, features):
            scale = tf.where(among(index, self.spikes), self.factor, 1.0)
            return dict(features, spike=tf.fill([tf.shape(features["masked_lm_ids"])[0]], scale))

        dataset = dataset.enumerate().filter(lambda i, _: ~among(i, self.skipped))
        return dataset.map(mark)

    def loss_sums(self, features, outputs):
        scale = tf.reduce_max(features["spike"])
        return {k: v * scale for k, v in super().loss_sums(features, outputs).items()}


def scalars(model_dir, tag):
    return [(event.step, float(tf.make_ndarray(value.tensor)))
            for path in tf.io.gfile.glob(os.path.join(model_dir, "train", "events*"))
            for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value if value.tag == tag]


SPIKE_TRAINER = {"num_train_steps": 12, "iterations_per_loop": 2, "save_checkpoints_steps": 4,
                 "recovery_max_trials": 2, "loss_upper_bound": 1000.0}


@pytest.fixture(scope="module")
def never_read_batches_4_to_7(data_dir, tmp_path_factory):
    experiment = bert_runs.experiment(data_dir, trainer=SPIKE_TRAINER)
    clean_dir = str(tmp_path_factory.mktemp("clean"))
    runner.run(SpikingBertTask(experiment.task, skipped=[4, 5, 6, 7]), experiment, clean_dir)
    return tf.train.latest_checkpoint(clean_dir)


@pytest.mark.parametrize("factor", [float("nan"), 1e7])
def test_loss_spike_recovery_rolls_back_and_skips_the_offending_batches(
        data_dir, tmp_path, never_read_batches_4_to_7, factor):
    experiment = bert_runs.experiment(data_dir, trainer=SPIKE_TRAINER)
    recovered_dir = str(tmp_path / "recovered")
    runner.run(SpikingBertTask(experiment.task, spikes=[6], factor=factor), experiment,
               recovered_dir)
    # Batch 6 is read by step 7, in the loop of steps 7-8: back to ckpt-4, on with batch 8.
    assert scalars(recovered_dir, "loss_spike_recoveries") == [(8, 1.0)]
    # So the run equals one that never read batches 4-7, bit for bit.
    recovered = tf.train.latest_checkpoint(recovered_dir)
    assert recovered.endswith("ckpt-12")
    bert_runs.assert_same_weights(recovered, never_read_batches_4_to_7)


def test_loss_spikes_beyond_recovery_max_trials_stop_with_the_last_good_checkpoint(
        data_dir, tmp_path):
    trainer = {"num_train_steps": 12, "iterations_per_loop": 2, "save_checkpoints_steps": 4,
               "recovery_max_trials": 1}
    experiment = bert_runs.experiment(data_dir, trainer=trainer)
    # Batch 2 spikes at step 3: back to ckpt-0 (saved at the start, to have one). Batch 9 is
    # then read by step 6, with the one roll-back used up.
    task = SpikingBertTask(experiment.task, spikes=[2, 9], factor=float("nan"))
    with pytest.raises(recovery.LossSpikeError, match=r"became NaN or Inf at step 6, after 1 "
                                                      r"roll-back\(s\) already .*ckpt-4\b"):
        runner.run(task, experiment, str(tmp_path))


def test_workers_that_disagree_on_a_value_are_stopped_naming_it():
    strategy = two_device_mirrored_strategy()
    distribution.check_same_on_every_worker(strategy, "the step", lambda _: 4)
    with pytest.raises(distribution.WorkersDisagreeError,
                       match=r"The workers disagree on the step \(from 4 to 5\)"):
        distribution.check_same_on_every_worker(
            strategy, "the step", lambda context: 4 + context.replica_id_in_sync_group)


def test_resuming_on_another_cluster_shape_is_refused_before_anything_is_written(
        data_dir, tmp_path, two_steps):
    bert_runs.copy_run(two_steps, tmp_path)  # one device, the default strategy
    params = (tmp_path / "params.yaml").read_text()
    assert "cluster:\n  workers: 1\n  replicas: 1\n" in params
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=r"were written by 1 worker\(s\) with 1 replica\(s\) in "
                                         r"all; this run has 1 worker\(s\) with 2 replica\(s\) "
                                         r"in all\. .*--init_checkpoint"):
        train(data_dir, tmp_path, two_device_mirrored_strategy(),
              trainer={"num_train_steps": 4})
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "params.yaml").read_text() == params
