r"""Fill the generated regions of the docs pages from the files they report.

    python -m benchmarks.docs_tables           # rewrite every region that is out of date
    python -m benchmarks.docs_tables --check   # list the stale regions, exit 1 if any

A region is the text between `<!-- generated: NAME -->` and `<!-- end generated -->` in a page of
docs/. Each NAME is made here by the code that made the committed result file (the studies'
own `table`/`markdown` functions on their CSVs), from the benchmarks' committed outputs in
benchmarks/results/performance/ (`performance.<file stem>`, benchmarks/performance_tables.py),
from the recipes in configs/, or from the bad-input cases of tests/bad_inputs.py, so a page
cannot quote a table its file does not hold.
"""

import argparse
import csv
import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
RESULTS = os.path.join(REPO, "benchmarks", "results")
REGION = re.compile(r"(<!-- generated: ([\w.-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _rows(name):
    with open(os.path.join(RESULTS, name)) as f:
        return list(csv.DictReader(f))


def _source(*paths):
    """The line under each table that names the files it was made from."""
    return "\n*Generated from " + ", ".join(f"`{p}`" for p in paths) + \
        " by `python -m benchmarks.docs_tables`.*\n"


def _workload_section(markdown, workload):
    """One workload's section of a study's report, without its heading (the page has its own)."""
    sections = re.split(r"^## ", markdown, flags=re.M)[1:]
    mine = [s for s in sections if re.match(rf"{workload}\b", s)]
    if len(mine) != 1:
        raise ValueError(f"the report has no single section for workload {workload!r}")
    return mine[0].split("\n", 1)[1].strip() + "\n"


def finetune(csv_name, tfidf_from=None):
    """The fine-tuning study's table from its CSV; with `tfidf_from`, plus the TF-IDF rows its
    command wrote into that .md (computed from the data, they are not in the CSV)."""
    from benchmarks import finetune_study
    table = finetune_study.table(_rows(csv_name))
    sources = [f"benchmarks/results/{csv_name}"]
    if tfidf_from:
        with open(os.path.join(RESULTS, tfidf_from)) as f:
            table += "".join(line for line in f if line.startswith("| TF-IDF"))
        sources.append(f"benchmarks/results/{tfidf_from} (TF-IDF rows)")
    return table + _source(*sources)


def pretraining_study():
    from benchmarks import pretraining_study as study
    return study.table(_rows("pretraining_study.csv")) + \
        _source("benchmarks/results/pretraining_study.csv")


def large_batch_study(workload):
    from benchmarks.large_batch_study import presets, report
    from benchmarks.large_batch_study.results import ResultsFile
    path = "benchmarks/results/large_batch_study_cpu/results.csv"
    records = list(ResultsFile(os.path.join(REPO, path)).records.values())
    markdown = report.markdown(presets.PRESETS["cpu"], records)
    return _workload_section(markdown, workload) + _source(path)


def steps_to_target(workload):
    from benchmarks.large_batch_study import presets, target_report
    from benchmarks.large_batch_study.results import ResultsFile, TargetRecord
    path = "benchmarks/results/steps_to_target_cpu/targets.csv"
    records = list(ResultsFile(os.path.join(REPO, path), TargetRecord).records.values())
    markdown = target_report.markdown(presets.TARGET_PRESETS["cpu"], records)
    return _workload_section(markdown, workload) + _source(path)


def _recipe_row(path):
    import yaml
    with open(path) as f:
        recipe = yaml.safe_load(f)
    task, trainer = recipe.get("task", {}), recipe.get("trainer", {})
    optimizer = recipe.get("optimizer", {})
    model = task.get("model", {})
    train_data = task.get("train_data", {})
    data = train_data.get("input_path", "")
    pairs = train_data.get("pair_task")
    name = os.path.relpath(path, os.path.join(REPO, "configs"))[:-len(".yaml")]
    # A fine-tuning recipe takes its encoder, and so its size, from --init_checkpoint.
    fine_tuning = os.path.basename(name).startswith("finetune_")
    cells = [f"`{name}`", "from `--init_checkpoint`" if fine_tuning
             else str(model.get("size", model.get("model_id", ""))),
             (f"`{data}`" if data else "")
             + (f" ({pairs.replace('_', '-')} pairs)" if pairs else ""),
             f"{trainer.get('train_batch_size', ''):,}",
             f"{trainer.get('num_train_steps', ''):,}", optimizer.get("name", ""),
             f"{optimizer.get('learning_rate', ''):g}",
             f"{optimizer.get('num_warmup_steps', ''):,}",
             task.get("init_checkpoint", "") or trainer.get("init_checkpoint", "")
             or ("`--init_checkpoint`" if fine_tuning else "")]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def transfer_levers():
    from benchmarks import pretraining_study as study
    tasks = ("bbc_news", "health_tweets")
    return study.lever_table(_rows("pretraining_study.csv"),
                             {task: _rows(f"finetune_{task}.csv") for task in tasks}) + \
        _source("benchmarks/results/pretraining_study.csv",
                *(f"benchmarks/results/finetune_{task}.csv" for task in tasks))


def hour_recipe_eval():
    """The hour recipe's phase 1 at each evaluation (`benchmarks.eval_history` of its run)."""
    from benchmarks import eval_history
    name = "tiny_wiki_lamb_hour_eval.csv"
    return eval_history.markdown(_rows(name), {
        "masked_lm_accuracy": ("masked-LM accuracy", ".1%"),
        "next_sentence_accuracy": ("next-sentence accuracy", ".1%"),
        "next_sentence_loss": ("next-sentence loss", ".3f"),
        "next_sentence_pooler_saturation": ("pooler outputs saturated", ".0%"),
    }) + _source(f"benchmarks/results/{name}")


def recipes():
    lines = ["| recipe (`--config_file=`) | model | training data | batch | updates | "
             "optimizer | peak rate | warmup | starts from |",
             "|---|---|---|---:|---:|---|---:|---:|---|"]
    lines += [_recipe_row(path)
              for path in sorted(glob.glob(os.path.join(REPO, "configs", "*", "*.yaml")))]
    return "\n".join(lines) + "\n" + _source("configs/*/*.yaml")


def _readable(pattern):
    """A case's regular expression as the reader will meet the line: escapes removed, `.*`
    (any text) shown as `…`."""
    text = pattern.replace(".*", "…").replace(r"\d+", "N")
    return re.sub(r"\\(.)", r"\1", text).replace("|", "\\|")


def bad_inputs():
    from tests.bad_inputs import CASES
    lines = [f"{len(CASES)} cases. Each command is `python -m trainers.<tool> <arguments>`; "
             "`{placeholders}` are files the test makes; the first line must match the text "
             "shown, where `…` stands for any text.\n",
             "| category | command | exit | first line |", "|---|---|---:|---|"]
    for category, module, args, code, pattern in CASES:
        shown = " ".join(args).replace("|", "\\|")
        lines.append(f"| {category} | `{module.split('.', 1)[1]} {shown}` | {code} | "
                     f"{_readable(pattern)} |")
    return "\n".join(lines) + "\n" + _source("tests/bad_inputs.py")


def batch_scaling_plan():
    """The batch-scaling study's default plan as `--plan` prints it, without its progress line."""
    from benchmarks.batch_scaling_study import protocol
    lines = protocol.describe(protocol.Plan())[:-1]
    return ("```text\n" + "\n".join(lines) + "\n```\n"
            + _source("benchmarks/batch_scaling_study/protocol.py"))


def batch_scaling_results():
    """The study's table and what held, from its committed CSVs, with its progress."""
    from benchmarks.batch_scaling_study import protocol, report
    from benchmarks.large_batch_study.results import ResultsFile
    folder = os.path.join(RESULTS, "batch_scaling")
    pretrainings = ResultsFile(os.path.join(folder, "pretraining.csv"), protocol.PretrainRecord)
    finetunings = ResultsFile(os.path.join(folder, "finetuning.csv"), protocol.FinetuneRecord)
    plan = protocol.Plan()
    progress = protocol.describe(plan, pretrainings.records, finetunings.records)[-1]
    # The report's own heading and paragraph of method are this page's sections above.
    body = report.markdown(plan, pretrainings.records, finetunings.records).split("\n\n", 2)[2]
    return (f"Progress: {progress}.\n\n" + body.replace("\n## ", "\n### ")
            + _source("benchmarks/results/batch_scaling/pretraining.csv",
                      "benchmarks/results/batch_scaling/finetuning.csv"))


def _printed_output(name):
    """A benchmark output kept in benchmarks/results/, as it printed it."""
    from benchmarks import performance_tables
    return performance_tables.printed(name, RESULTS)


def _performance():
    """The performance page's regions: one per committed benchmark output, named after it, and
    the machine they were measured on."""
    from benchmarks import performance_tables as perf
    lambs = (("x keras Lamb", "keras Lamb, same decay"),
             ("x MG LAMB", "Model Garden LAMB (tf_keras)"))
    jax_columns = ["ms/step", "x AdamW", "x keras Lamb", "x optax"]
    tables = {  # file stem: (first column, columns kept, ratios added)
        "optimizer_step_base": ("optimizer", ["ms/step", "x AdamW", "x floor"], lambs),
        "optimizer_step_mini": ("optimizer", ["ms/step", "x AdamW", "x floor"], lambs),
        "optimizer_step_base_graph": ("optimizer", ["ms/step", "x AdamW"], lambs),
        "optimizer_step_mini_graph": ("optimizer", ["ms/step", "x AdamW"], lambs),
        "jax_optimizer_step_base": ("optimizer", jax_columns, ()),
        "jax_optimizer_step_mini": ("optimizer", jax_columns, ()),
        "trainer_throughput": ("contender", ["examples/s", "x MG loop"], ()),
        "trainer_throughput_resnet18": ("contender", ["examples/s", "x MG loop"], ()),
        "trainer_throughput_tiny_runner": ("contender", ["examples/s"], ()),
        "trainer_throughput_resnet50_runner": ("contender", ["examples/s"], ()),
        "batch_scaling_throughput": ("batch: micro-batch x accumulation",
                                     ["examples/s", "x batch 128"], ()),
    }
    regions = {"performance.machine": perf.machines}
    for name in perf.names():
        stem = name[:-len(".txt")]
        if stem in tables:
            regions[f"performance.{stem}"] = (
                lambda name=name, spec=tables[stem]: perf.markdown_table(name, *spec))
        else:
            regions[f"performance.{stem}"] = lambda name=name: perf.printed(name)
    return regions


GENERATORS = {
    **_performance(),
    "batch_scaling_plan": batch_scaling_plan,
    "batch_scaling_results": batch_scaling_results,
    "finetune_bbc_news": lambda: finetune("finetune_bbc_news.csv", "finetune_bbc_news.md"),
    "finetune_bbc_news_init_cls_pooler": lambda: finetune("finetune_bbc_news_init_cls_pooler.csv"),
    "finetune_bbc_news_10_epochs": lambda: finetune("finetune_bbc_news_10_epochs.csv"),
    "finetune_bbc_news_layer_decay": lambda: finetune("finetune_bbc_news_layer_decay.csv"),
    "finetune_health_tweets_layer_decay":
        lambda: finetune("finetune_health_tweets_layer_decay.csv"),
    "finetune_health_tweets_10_epochs": lambda: finetune("finetune_health_tweets_10_epochs.csv"),
    "finetune_health_tweets": lambda: finetune("finetune_health_tweets.csv",
                                               "finetune_health_tweets.md"),
    "finetune_tweet_sentiment": lambda: finetune("finetune_tweet_sentiment.csv",
                                                 "finetune_tweet_sentiment.md"),
    "pretraining_study": pretraining_study,
    "vocab_coverage": lambda: _printed_output("vocab_coverage.txt"),
    "transfer_levers": transfer_levers,
    "hour_recipe_eval": hour_recipe_eval,
    "large_batch_study_cpu.fashion_cnn": lambda: large_batch_study("fashion_cnn"),
    "large_batch_study_cpu.bert": lambda: large_batch_study("bert"),
    "steps_to_target_cpu.fashion_cnn": lambda: steps_to_target("fashion_cnn"),
    "steps_to_target_cpu.bert": lambda: steps_to_target("bert"),
    "recipes": recipes,
    "bad_inputs": bad_inputs,
}


def pages():
    return sorted(glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True))


def refreshed(text, made):
    """`text` with each generated region replaced by what its generator prints now; `made`
    caches the generators' output across pages."""
    def fill(match):
        name = match.group(2)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated region {name!r}; known: {sorted(GENERATORS)}")
        if name not in made:
            made[name] = GENERATORS[name]()
        return match.group(1) + "\n" + made[name] + "\n" + match.group(4)
    return REGION.sub(fill, text)


def stale_regions():
    """(page, region name) of every region whose text differs from its generator's output."""
    made, stale = {}, []
    for page in pages():
        with open(page) as f:
            text = f.read()
        for match in REGION.finditer(text):
            if refreshed(match.group(0), made) != match.group(0):
                stale.append((os.path.relpath(page, REPO), match.group(2)))
    return stale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="Only list the stale regions; exit 1 if there are any.")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_regions()
        for page, name in stale:
            print(f"{page}: region {name} differs from python -m benchmarks.docs_tables")
        return 1 if stale else 0
    made = {}
    for page in pages():
        with open(page) as f:
            text = f.read()
        new = refreshed(text, made)
        if new != text:
            with open(page, "w") as f:
                f.write(new)
            print(f"updated {os.path.relpath(page, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
