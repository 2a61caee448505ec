r"""Bad inputs a user can give the command-line tools, each with the exit code and first line due.

`python -m tests.bad_inputs` runs every case (a few minutes) and prints each outcome (the table of
docs/reliability.md is generated from CASES by `python -m benchmarks.docs_tables`);
`tests/test_bad_inputs.py` runs the first case of each category. Each case is
(category, module, arguments, exit code, regex the first `error:` line must match); arguments
name files by `{placeholder}`s that `Files` makes.
"""

import json
import os
import re
import subprocess
import sys

from tests import bert_runs

REPO = bert_runs.REPO
_TABLES = ("task.train_data.input_path={table},task.eval_data.input_path={table},"
           "task.train_data.max_seq_length=32,task.eval_data.max_seq_length=32")

CASES = [
    # ------------------------------------------------------------------ flag syntax (exit 2)
    ("flags", "trainers.bert", ["--train_batch_sise=64"],
     2, r"error: Unknown command line flag 'train_batch_sise'. Did you mean: train_batch_size"),
    ("flags", "trainers.bert", ["--train_batch_size=many"],
     2, r"error: flag --train_batch_size=many: invalid literal for int"),
    ("flags", "trainers.bert", ["--distribution_strategy=gpu"],
     2, r"error: flag --distribution_strategy=gpu: value should be one of"),
    ("flags", "trainers.bert", ["--dtype=fp16"], 2, r"error: flag --dtype=fp16: value should be"),
    ("flags", "trainers.resnet", ["--mode=training"], 2, r"error: flag --mode=training"),
    ("flags", "trainers.data.create_pretraining_data", ["--max_seq_length=1.5"],
     2, r"error: flag --max_seq_length=1.5"),
    ("flags", "trainers.bert", ["stray_argument"], 2, r"error: Unexpected arguments"),
    # ----------------------------------------------------------------------- config files
    ("config", "trainers.bert", ["--config_file={bad_yaml}"],
     1, r"error: .*bad_yaml\.yaml: not valid YAML: .* at line \d+"),
    ("config", "trainers.bert", ["--config_file={missing}"],
     1, r"error: Config file .*missing\.yaml does not exist"),
    ("config", "trainers.bert", ["--config_file={unknown_key}"],
     1, r"error: .*unknown_key\.yaml: Unknown config key 'train_batch_sise' in section "
        r"'trainer'\. Did you mean 'train_batch_size'\?"),
    ("config", "trainers.bert", ["--config_file={wrong_type}"],
     1, r"error: .*wrong_type\.yaml: Config key 'trainer\.num_train_steps' expects an integer"),
    ("config", "trainers.bert", ["--config_file={flat_optimizer}"],
     1, r"error: .*Unknown config key 'weight_decay' in section 'optimizer'\. Did you mean "
        r"'lamb\.weight_decay'"),
    ("config", "trainers.bert", ["--config_file={section_value}"],
     1, r"error: .*Config key 'optimizer\.momentum' is a section of settings, not a value"),
    ("config", "trainers.bert", ["--config_file={not_mapping}"],
     1, r"error: .*Config key 'trainer' is a section of settings, not a value \(got \[1, 2\]\)"),
    # --------------------------------------------------------------------- params_override
    ("override", "trainers.bert", ["--params_override=optimizer.learning_rate=[1,"],
     1, r"error: --params_override: the value of 'optimizer\.learning_rate' is not valid YAML"),
    ("override", "trainers.bert", ["--params_override=trainer.train_batch_size"],
     1, r"error: --params_override: item 'trainer\.train_batch_size' is not of the form "
        r"key\.path=value"),
    ("override", "trainers.bert", ["--params_override=optimizer.lamb.beta3=0.9"],
     1, r"error: --params_override: Unknown config key 'beta3' in section 'optimizer\.lamb'"),
    # ------------------------------------------------------------------- values in range
    ("values", "trainers.resnet", ["--use_synthetic_data",
                                   "--params_override=task.model.model_id=19"],
     1, r"error: task\.model\.model_id=19 is not a Model Garden ResNet depth"),
    ("values", "trainers.bert", ["--config_file={config}", "--train_batch_size=0"],
     1, r"error: train_batch_size=0 must be a positive number of examples"),
    ("values", "trainers.bert", ["--config_file={config}", "--train_batch_size=-8"],
     1, r"error: train_batch_size=-8 must be a positive number"),
    ("values", "trainers.bert", ["--config_file={config}", "--distribution_strategy=mirrored",
                                 "--num_cpu_devices=2", "--train_batch_size=15"],
     1, r"error: train_batch_size=15 does not divide across 2 replica\(s\).*Nearest valid "
        r"sizes: 14 or 16"),
    ("values", "trainers.bert", ["--config_file={config}", "--num_warmup_steps=50"],
     1, r"error: --num_warmup_steps=50 \(optimizer\.num_warmup_steps\) is longer than "
        r"--num_train_steps=2"),
    ("values", "trainers.bert", ["--config_file={config}", "--num_warmup_steps=2"],
     1, r"error: --num_warmup_steps=2 \(optimizer\.num_warmup_steps\) is as long as "
        r"--num_train_steps=2"),
    ("values", "trainers.bert", ["--config_file={config}", "--iterations_per_loop=0"],
     1, r"error: iterations_per_loop=0 must be >= 1"),
    ("values", "trainers.bert", ["--config_file={config}", "--num_accumulation_steps=0"],
     1, r"error: num_accumulation_steps=0 must be >= 1"),
    ("values", "trainers.bert", ["--config_file={config}",
                                 "--params_override=optimizer.name=adam"],
     1, r"error: Unknown optimizer 'adam'; choose one of \['lamb', 'lars', 'adamw', "
        r"'momentum'\]"),
    ("values", "trainers.bert", ["--config_file={config}", "--learning_rate=-0.1"],
     1, r"error: --learning_rate=-0\.1 \(optimizer\.learning_rate\) must be >= 0"),
    ("values", "trainers.bert", ["--config_file={config}",
                                 "--params_override=task.train_data.pair_task=next_sentence"],
     1, r"error: task\.train_data\.pair_task='next_sentence' is not one of \['random_next', .*\]"),
    ("values", "trainers.bert", ["--config_file={config}",
                                 "--params_override=task.train_data.pair_task=sentence_order"],
     1, r"error: task\.train_data\.pair_task='sentence_order' but "
        r"task\.eval_data\.pair_task='random_next'"),
    ("values", "trainers.bert", ["--config_file={config}",
                                 "--params_override=task.probe_tasks=[bbc]"],
     1, r"error: task\.probe_tasks=\['bbc'\]: give built-in task names, from \['bbc_news', .*\]"),
    # ------------------------------------------------------------- devices and the cluster
    ("cluster", "trainers.bert", ["--config_file={config}", "--distribution_strategy=tpu",
                                  "--tpu=local"],
     1, r"error: distribution_strategy=tpu with tpu='local': no TPU is reachable .* without a "
        r"TPU use --distribution_strategy=one_device"),
    ("cluster", "trainers.bert", ["--config_file={config}",
                                  "--distribution_strategy=multi_worker_mirrored"],
     1, r"error: distribution_strategy=multi_worker_mirrored needs the TF_CONFIG"),
    ("cluster", "trainers.bert", ["--config_file={config}", "--distribution_strategy=mirrored",
                                  "--num_gpus=2"],
     1, r"error: num_gpus=2 but 0 GPU\(s\) are visible"),
    ("cluster", "trainers.bert", ["--config_file={config}",
                                  "--distribution_strategy=multi_worker_mirrored",
                                  "--params_override=runtime.peer_timeout_seconds=1"],
     1, r"error: cluster task\(s\) worker 1 \(localhost:\d+\) did not come up within 1 s"),
    # ------------------------------------------------------------------------ model_dir
    ("model_dir", "trainers.bert", ["--config_file={config}", "--model_dir=/proc/lamb_tf_run"],
     1, r"error: .*/proc/lamb_tf_run"),
    ("model_dir", "trainers.bert", ["--config_file={config}", "--model_dir={trained}",
                                    "--train_batch_size=32", "--num_train_steps=4"],
     1, r"error: .*train_batch_size: 16 -> 32"),
    ("model_dir", "trainers.bert", ["--config_file={config}", "--model_dir={empty_dir}",
                                    "--mode=eval"],
     1, r"error: No checkpoint in .* to evaluate; train first"),
    ("model_dir", "trainers.bert", ["--config_file={config}", "--model_dir={broken}",
                                    "--num_train_steps=4"],
     1, r"error: .*ckpt-2"),
    # ------------------------------------------------------------------ training data
    ("train_data", "trainers.bert", ["--config_file={config}",
                                     "--params_override=task.train_data.input_path=/nowhere/x-*"],
     1, r"error: .*/nowhere/x-\*"),
    ("train_data", "trainers.bert", ["--config_file={config_seq64}"],
     1, r"error: .*max_seq_length"),
    ("train_data", "trainers.bert", ["--config_file={config}", "--model_dir={corrupt_run}",
                                     "--params_override=task.train_data.input_path={corrupt}"],
     1, r"error: .*corrupt"),
    ("train_data", "trainers.bert", ["--config_file={config}", "--init_checkpoint=/nowhere/ckpt"],
     1, r"error: init_checkpoint '/nowhere/ckpt' is not a checkpoint"),
    ("train_data", "trainers.bert", ["--config_file={config_big_vocab}"],
     1, r"error: .*vocab"),
    ("train_data", "trainers.bert", ["--config_file={config}", "--params_override="
                                     "task.train_data.pair_task=sentence_order,"
                                     "task.eval_data.pair_task=sentence_order"],
     1, r"error: task\.train_data\.pair_task='sentence_order' but the shards in .* were made "
        r"with pair_task='random_next': set task\.train_data\.pair_task and "
        r"task\.eval_data\.pair_task to 'random_next' \(train and eval shards made alike\)"),
    ("train_data", "trainers.resnet",
     ["--train_batch_size=2", "--num_train_steps=2", "--iterations_per_loop=1",
      "--num_warmup_steps=0", "--params_override=task.train_data.input_path={image_shards},"
      "task.eval_data.input_path={image_shards},task.model.num_classes=1,"
      "task.model.image_size=32,task.model.model_id=10"],
     1, r"error: A label is out of range for num_classes=1 after label_offset=0; check both .*"
        r"\(a value the check met: 1\)"),
    # ------------------------------------------------------- create_pretraining_data
    ("text_tool", "trainers.data.create_pretraining_data",
     ["--input_file={nonutf8}", "--vocab_size=100", "--output_dir={out}/a"],
     1, r"error: .*nonutf8\.txt is not UTF-8 text \(byte e9 near offset 3\)"),
    ("text_tool", "trainers.data.create_pretraining_data",
     ["--input_file=/nowhere/*.txt", "--vocab_size=100", "--output_dir={out}/b"],
     1, r"error: .*/nowhere/\*\.txt"),
    ("text_tool", "trainers.data.create_pretraining_data",
     ["--input_file={corpus}", "--vocab_file=/nowhere/vocab.txt", "--output_dir={out}/c"],
     1, r"error: Vocab file /nowhere/vocab\.txt does not exist"),
    ("text_tool", "trainers.data.create_pretraining_data",
     ["--input_file={empty_text}", "--vocab_size=100", "--output_dir={out}/d"],
     1, r"error: .*empty"),
    ("text_tool", "trainers.data.create_pretraining_data",
     ["--input_file={corpus}", "--output_dir={out}/e"],
     1, r"error: .*--vocab_file.*--vocab_size"),
    ("text_tool", "trainers.data.create_pretraining_data",
     ["--input_file={corpus}", "--vocab_file={vocab}", "--output_dir={bert_data}"],
     1, r"error: .*--overwrite"),
    ("text_tool", "trainers.data.inspect_pretraining_data", ["/nowhere/train-*"],
     1, r"error: .*/nowhere/train-\*"),
    # ----------------------------------------------------------------- images_to_tfrecords
    ("image_tool", "trainers.data.images_to_tfrecords",
     ["--image_dir=/nowhere", "--output_dir={out}/f"], 1, r"error: .*/nowhere"),
    ("image_tool", "trainers.data.images_to_tfrecords",
     ["--image_dir={empty_dir}", "--output_dir={out}/g"], 1, r"error: .*"),
    ("image_tool", "trainers.data.images_to_tfrecords",
     ["--image_dir={images}", "--output_dir={out}/h", "--label_offset=-5"],
     1, r"error: .*label_offset"),
    ("image_tool", "trainers.data.images_to_tfrecords", ["--output_dir={out}/i"],
     2, r"error: Give --image_dir"),
    # ------------------------------------------------------------------------- fine-tuning
    ("finetune", "trainers.bert.finetune",
     ["--init_checkpoint={trained}", "--params_override=task.vocab_file={other_vocab}," + _TABLES],
     1, r"error: task\.vocab_file .*other_vocab\.txt is not the vocab .*vocab\.txt that "
        r".*trained was pretrained with"),
    ("finetune", "trainers.bert.finetune", ["--params_override=" + _TABLES],
     1, r"error: No vocab: pass --init_checkpoint"),
    ("finetune", "trainers.bert.finetune",
     ["--init_checkpoint={bert_data}", "--params_override=" + _TABLES],
     1, r"error: init_checkpoint .* is neither a trainers\.bert model_dir"),
    ("finetune", "trainers.bert.finetune",
     ["--init_checkpoint={trained}", "--params_override=task.train_data.text_column=text,"
      + _TABLES], 1, r"error: .*table\.tsv has no column 'text' \(its header: "),
    ("finetune", "trainers.bert.finetune",
     ["--init_checkpoint={trained}", "--params_override=task.labels=[a, b]," + _TABLES],
     1, r"error: .*table\.tsv, line 2: label 'yes' is not one of task\.labels"),
    ("finetune", "trainers.bert.finetune",
     ["--init_checkpoint={trained}", "--params_override=task.train_data.max_seq_length=32,"
      "task.eval_data.max_seq_length=32,task.train_data.input_path=bbc_news:validation"],
     1, r"error: Unknown split 'validation' of bbc_news"),
    ("finetune", "trainers.bert.finetune",
     ["--init_checkpoint={trained}",
      "--params_override=" + _TABLES + ",task.train_data.max_seq_length=64"],
     1, r"error: task\.train_data\.max_seq_length=64 exceeds"),
    ("finetune", "trainers.bert.finetune",
     ["--init_checkpoint={trained}", "--params_override=" + _TABLES],
     1, r"error: The training data has 2 examples per input pipeline, fewer than one "
        r"per-replica batch \(32\); lower --train_batch_size"),
    ("finetune", "trainers.bert.finetune",
     ["--init_checkpoint={trained}", "--train_batch_size=2", "--params_override=" + _TABLES
      + ",optimizer.name=adamw,optimizer.adamw.layer_decay=1.5"],
     1, r"error: optimizer\.adamw\.layer_decay=1\.5 must be in \(0, 1\]"),
    # ---------------------------------------------------------------------------- export
    ("export", "trainers.bert.export", ["--model_dir={empty_dir}", "--output_dir={out}/j"],
     1, r"error: .*"),
    ("export", "trainers.bert.export", ["--model_dir={trained}", "--output_dir={bert_data}"],
     1, r"error: .*--overwrite"),
]


class Files(dict):
    """{placeholder: path} for the cases' arguments, each made on first use under `root`."""

    def __init__(self, root):
        super().__init__(root=root, out=os.path.join(root, "out"),
                         missing=os.path.join(root, "missing.yaml"))
        os.makedirs(root, exist_ok=True)

    def __missing__(self, name):
        make = getattr(self, f"_make_{name}", None)
        self[name] = make() if make else self._yaml(name)
        return self[name]

    def _path(self, name):
        return os.path.join(self["root"], name)

    _YAML = {
        "bad_yaml": "trainer:\n  train_batch_size: [64\n",
        "unknown_key": "trainer: {train_batch_sise: 64}\n",
        "wrong_type": "trainer: {num_train_steps: many}\n",
        "flat_optimizer": "optimizer: {weight_decay: 0.01}\n",
        "section_value": "optimizer: {momentum: 0.9}\n",
        "not_mapping": "trainer: [1, 2]\n",
    }

    def _yaml(self, name):
        path = self._path(f"{name}.yaml")
        with open(path, "w") as f:
            f.write(self._YAML[name])
        return path

    _TINY = {"trainer": {"num_train_steps": 2, "iterations_per_loop": 1,
                         "save_checkpoints_steps": 1}}

    def _make_bert_data(self):
        return bert_runs.make_data(self._path("bert"))

    def _make_vocab(self):
        return os.path.join(self["bert_data"], "vocab.txt")

    def _make_config(self):
        return bert_runs.write_config(self._path("tiny.yaml"), self["bert_data"], **self._TINY)

    def _make_config_seq64(self):
        return bert_runs.write_config(
            self._path("seq64.yaml"), self["bert_data"], **self._TINY,
            task={"train_data": {"max_seq_length": 64}, "model": {"max_position_embeddings": 64}})

    def _make_config_big_vocab(self):
        return bert_runs.write_config(self._path("vocab.yaml"), self["bert_data"], **self._TINY,
                                      task={"model": {"vocab_size": 50}})

    def _make_other_vocab(self):
        path = self._path("other_vocab.txt")
        with open(self["vocab"]) as f:
            tokens = f.read().split()
        with open(path, "w") as f:
            f.write("\n".join(tokens[:5] + tokens[:4:-1]) + "\n")
        return path

    def _make_table(self):
        path = self._path("table.tsv")
        with open(path, "w") as f:
            f.write("sentence\tlabel\nd0w1 d0w2\tyes\nd1w1\tno\n")
        return path

    def _make_corpus(self):
        from tests import synthetic_text
        return synthetic_text.write_corpus(self._path("text"))[0][0]

    def _make_nonutf8(self):
        path = self._path("nonutf8.txt")
        with open(path, "wb") as f:
            f.write(b"caf\xe9 au lait\n\nsecond document\n")
        return path

    def _make_empty_text(self):
        path = self._path("empty.txt")
        open(path, "w").close()
        return path

    def _make_empty_dir(self):
        path = self._path("empty_dir")
        os.makedirs(path, exist_ok=True)
        return path

    def _make_images(self):
        return _write_images(self._path("images"))

    def _make_image_shards(self):
        from trainers.data import images_to_tfrecords
        output_dir = self._path("image_shards")
        images, classes = images_to_tfrecords.images_from_folder(self["images"])
        images_to_tfrecords.write_shards(images, classes, output_dir, "train", 1, 0)
        return os.path.join(output_dir, "train-*")

    def _make_corrupt(self):
        return _corrupt_copy(self["bert_data"], self._path("corrupt"))

    def _make_corrupt_run(self):
        return self._path("corrupt_run")

    def _make_trained(self):
        return self._train(self._path("trained"))

    def _make_broken(self):
        model_dir = self._train(self._path("broken"))
        for name in os.listdir(model_dir):
            if name.startswith("ckpt-") and ".data" in name:
                with open(os.path.join(model_dir, name), "r+b") as f:
                    f.truncate(10)
        return model_dir

    def _train(self, model_dir):
        code, output = bert_runs.run_cli(f"--config_file={self['config']}",
                                         f"--model_dir={model_dir}")
        assert code == 0, output
        return model_dir


def _write_images(folder):
    import numpy as np
    import tensorflow as tf
    for label in ("cat", "dog"):
        os.makedirs(os.path.join(folder, label), exist_ok=True)
        for i in range(2):
            image = np.full((8, 8, 3), 40 * i + (0 if label == "cat" else 120), np.uint8)
            tf.io.write_file(os.path.join(folder, label, f"{i}.png"), tf.io.encode_png(image))
    return folder


def _corrupt_copy(data_dir, folder):
    import shutil
    os.makedirs(folder, exist_ok=True)
    source = sorted(p for p in os.listdir(data_dir) if p.startswith("train-"))[0]
    target = os.path.join(folder, "train-00000")
    shutil.copy(os.path.join(data_dir, source), target)
    with open(target, "r+b") as f:
        f.seek(200)
        f.write(b"\xff" * 16)
    return os.path.join(folder, "train-*")


def run_case(case, paths, timeout=300):
    """(exit code, first `error:` line or the last line, whole output) of one case."""
    _, module, args, _, _ = case
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    if "--distribution_strategy=multi_worker_mirrored" in args and "peer_timeout" in str(args):
        from tests.test_runner_processes import free_ports
        ports = free_ports(2)
        env["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": 0}})
    else:
        env.pop("TF_CONFIG", None)
    argv = [a.format_map(paths) for a in args]
    if module.startswith("trainers.bert") or module == "trainers.resnet":
        if not any(a.startswith("--model_dir") for a in argv) and module != "trainers.bert.export":
            run_name = re.sub(r"\W+", "_", " ".join(argv))[-80:]
            argv.append(f"--model_dir={os.path.join(paths['out'], 'runs', run_name)}")
    done = subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    first = errors[0] if errors else (output.strip().splitlines() or [""])[-1]
    return done.returncode, first, output


def judge(case, outcome):
    """None if the case's (exit code, first line, output) is as promised, else what is not."""
    code, first, output = outcome
    _, _, _, expected_code, pattern = case
    if "Traceback" in output:
        return f"traceback:\n{output[-3000:]}"
    if code != expected_code:
        return f"exit {code}, expected {expected_code}: {first}\n{output[-2000:]}"
    if not re.search(pattern, first):
        return f"first line {first!r} does not match {pattern!r}"
    return None


def main():
    import tempfile
    root = tempfile.mkdtemp(prefix="bad_inputs_")
    paths = Files(root)
    rows, failures = [], 0
    for case in CASES:
        category, module, args, _, _ = case
        code, first, output = outcome = run_case(case, paths)
        problem = judge(case, outcome)
        failures += problem is not None
        shown = " ".join(args).replace("|", "\\|")
        line = first.replace(root, "…").replace("|", "\\|")
        rows.append(f"| {category} | `{module.split('.')[-1]} {shown}` | {code} | {line} |"
                    + (f" **{problem.splitlines()[0]}**" if problem else ""))
        print(rows[-1], flush=True)
    print(f"\n{len(CASES)} cases, {failures} not as promised", flush=True)
    return failures


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
