"""The README and the manual in docs/: the site builds strictly, every generated table equals what
its generator prints from the committed files now, every Python block runs (or says why not),
and the README stays the short entrance with links that work away from the repository."""

import glob
import json
import os
import re
import subprocess
import sys
import warnings

import pytest

from benchmarks import docs_tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
PAGES = sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
TEST_COMMAND = "python -m pytest -q tests"
MARKER = re.compile(r"<!-- (skip|fresh process): (.+?) -->")
FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def python_blocks(path):
    """(code, marker kind or None, reason) of each ```python block, the marker being an HTML
    comment on the last non-empty line before the block."""
    text = _read(path)
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").splitlines()
        marker = MARKER.fullmatch(before[-1].strip()) if before else None
        blocks.append((match.group(1), *(marker.groups() if marker else (None, None))))
    return blocks


def sessions():
    """Blocks as a reader runs them: a page's blocks in order in one namespace, a new namespace
    from each `fresh process` marker on; skipped blocks apart. Returns (processes, skipped):
    each process a list of (where, code) sessions. Sessions without a `fresh process` marker
    share one process (each in its own namespace), to pay TensorFlow's import once."""
    shared, fresh, skipped = [], [], []
    for path in [README] + PAGES:
        name = os.path.relpath(path, REPO)
        current = None
        for index, (code, kind, reason) in enumerate(python_blocks(path), 1):
            if kind == "skip":
                skipped.append((f"{name} block {index}", reason))
                continue
            if current is None or kind == "fresh process":
                current = [f"{name} from block {index}", ""]
                if kind == "fresh process":
                    fresh.append([current])
                else:
                    shared.append(current)
            current[1] += code + "\n"
    return [shared] + fresh, skipped


PROCESSES, SKIPPED = sessions()
RUNNER = """
import json, sys, traceback
failed = []
for where, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, where, "exec"), {"__name__": "__main__"})
    except BaseException:
        failed.append(where)
        print(f"{where} failed:", file=sys.stderr)
        traceback.print_exc()
sys.exit(1 if failed else 0)
"""


def test_the_docs_have_blocks_to_run_and_every_skip_says_why():
    assert sum(len(process) for process in PROCESSES) >= 5, PROCESSES
    for where, reason in SKIPPED:
        assert len(reason.split()) >= 3, f"{where}: give the reason it cannot run here"
        warnings.warn(f"not run: {where}: {reason}")


@pytest.mark.parametrize("process", PROCESSES,
                         ids=[" + ".join(where for where, _ in p) for p in PROCESSES])
def test_python_blocks_run(process, tmp_path):
    (tmp_path / "sessions.json").write_text(json.dumps(process), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", RUNNER, "sessions.json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_block_extraction_sees_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- skip: needs a TPU pod -->\n```python\nraise SystemExit(1)\n```\n"
                    "```python\nx = 1\n```\n<!-- fresh process: sets a backend -->\n\n"
                    "```python\nprint(2)\n```\n", encoding="utf-8")
    assert python_blocks(str(page)) == [("raise SystemExit(1)\n", "skip", "needs a TPU pod"),
                                        ("x = 1\n", None, None),
                                        ("print(2)\n", "fresh process", "sets a backend")]


def test_generated_tables_equal_what_their_files_give_now():
    assert docs_tables.stale_regions() == [], "run python -m benchmarks.docs_tables"


def test_a_changed_figure_in_a_generated_table_is_found():
    page = os.path.join(REPO, "docs", "results", "pretraining.md")
    text = _read(page)
    assert "| lamb_0.03 |" in text
    # The CSV's masked-LM accuracy of lamb_0.03 is 0.1372: the page must say 13.7%.
    changed = text.replace("| 13.7% | 52.0% |", "| 13.9% | 52.0% |", 1)
    assert changed != text
    assert docs_tables.refreshed(changed, {}) == text


def test_recipes_table_lists_every_recipe():
    table = docs_tables.recipes()
    for path in glob.glob(os.path.join(REPO, "configs", "*", "*.yaml")):
        name = os.path.relpath(path, os.path.join(REPO, "configs"))[:-len(".yaml")]
        assert f"| `{name}` |" in table


def test_bad_inputs_table_has_a_row_per_case():
    from tests.bad_inputs import CASES
    rows = [line for line in docs_tables.bad_inputs().splitlines()
            if line.startswith("| ") and not line.startswith(("| category", "|---"))]
    assert len(rows) == len(CASES)


def test_site_builds_strictly(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_readme_is_the_short_entrance():
    text = _read(README)
    assert len(text.splitlines()) <= 200
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert 'pip install -e ".[demo]" && python -m trainers.bert' in first_block
    test_line = next(line for line in first_block.splitlines() if TEST_COMMAND in line)
    assert test_line.startswith('pip install -e ".[dev]" && ')
    # CI runs the README's whole line, installs included, as a new user types it; .ci/run
    # splits it with backslash-newlines, which the shell removes as this does.
    ci_commands = re.sub(r"\\\n\s*", "", _read(os.path.join(REPO, ".ci", "run")))
    assert test_line in ci_commands


def test_every_page_is_reached_from_the_readme_through_the_index():
    # On GitHub there is no site nav: the README links the index, which links every page.
    from_readme = set(re.findall(r"\]\((docs/[^)#]+\.md)", _read(README)))
    assert "docs/index.md" in from_readme
    from_index = {os.path.normpath(os.path.join("docs", link)) for link in re.findall(
        r"\]\(([^)#:]+\.md)", _read(os.path.join(REPO, "docs", "index.md")))}
    pages = {os.path.relpath(p, REPO) for p in PAGES}
    assert pages - from_index - {"docs/index.md"} == set()


def test_long_description_has_no_relative_links():
    done = subprocess.run([sys.executable, "setup.py", "--long-description"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    relative = re.findall(r"\]\((?!https?://)[^)]*\)", done.stdout)
    assert relative == []
    assert "(`docs/distributed.md`)" in done.stdout


def test_pages_do_not_speak_of_their_history():
    history = re.compile(r"issue \d+|this session|the session|until this|the former recipe|"
                         r"as it was\b|this readme", re.I)
    for path in [README] + PAGES:
        if path.endswith("changelog.md"):
            continue
        found = history.findall(_read(path))
        assert found == [], f"{os.path.relpath(path, REPO)}: {found} (history: changelog.md)"


def test_benchmark_output_records_command_versions_machine_and_date(tmp_path):
    (tmp_path / "fake_benchmark.py").write_text(
        "import sys\nfrom benchmarks import result_file\n"
        "def main():\n    print('argv', sys.argv[1:])\n    print('| a | 1.00 |')\n"
        "if __name__ == '__main__':\n    result_file.run(main)\n", encoding="utf-8")
    output = tmp_path / "table.txt"
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run([sys.executable, "-m", "fake_benchmark", "--rounds=3",
                           f"--output={output}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "argv ['--rounds=3']" in done.stdout
    lines = output.read_text().splitlines()
    assert lines[0] == "command: python -m fake_benchmark --rounds=3"
    assert lines[1].startswith("versions: Python ")
    assert lines[2].startswith("machine: ") and "cores" in lines[2]
    assert re.fullmatch(r"date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", lines[3])
    assert lines[5:] == ["argv ['--rounds=3']", "| a | 1.00 |"]
    # A backend chosen by environment is part of the command a reader must type.
    env["KERAS_BACKEND"] = "jax"
    subprocess.run([sys.executable, "-m", "fake_benchmark", f"--output={output}"], cwd=tmp_path,
                   env=env, capture_output=True, text=True, timeout=60, check=True)
    first_line = output.read_text().splitlines()[0]
    assert first_line == "command: KERAS_BACKEND=jax python -m fake_benchmark"


def test_performance_table_is_read_back_from_a_benchmark_output(tmp_path, monkeypatch):
    from benchmarks import performance_tables
    (tmp_path / "step.txt").write_text(
        "command: python -m benchmarks.optimizer_step --size=mini\n"
        "versions: Python 3.11.7, tensorflow 2.20.0\n"
        "machine: Some CPU, 2 cores, Linux 6; load average at the end 1.50\n"
        "date: 2026-12-06 10:11 UTC\n\n"
        "BERT-mini-shaped set: 71 variables\n"
        "optimizer                            ms/step  x AdamW    GB/s  x floor\n"
        "keras AdamW (anchor)                    30.0     1.00    11.8     0.89\n"
        "lamb_tf.Lamb                            15.0     0.50    21.7     1.64\n"
        "keras Lamb, same decay (with, commas)   20.0     0.67    15.9     1.20\n"
        "wrote step.txt\n", encoding="utf-8")
    monkeypatch.setattr(performance_tables, "PERFORMANCE", str(tmp_path))
    table = performance_tables.markdown_table(
        "step.txt", "optimizer", ["ms/step", "x floor"],
        [("x Keras Lamb", "keras Lamb, same decay (with, commas)")])
    lines = table.splitlines()
    assert lines[0] == "| optimizer | ms/step | x floor | x Keras Lamb |"
    # A name with spaces and commas stays whole; the ratio is 15.0 / 20.0 and 30.0 / 20.0.
    assert lines[2:5] == ["| keras AdamW (anchor) | 30.0 | 0.89 | 1.50 |",
                          "| **lamb_tf.Lamb** | 15.0 | 1.64 | 0.75 |",
                          "| keras Lamb, same decay (with, commas) | 20.0 | 1.20 | 1.00 |"]
    assert "`python -m benchmarks.optimizer_step --size=mini`" in lines[-1]
    assert "2026-12-06 10:11 UTC" in lines[-1] and "load average at the end 1.50" in lines[-1]
    with pytest.raises(ValueError, match="no row 'Keras Lamb' to divide by"):
        performance_tables.markdown_table("step.txt", "optimizer", ["ms/step"],
                                          [("x", "Keras Lamb")])


def test_table_cells_are_read_under_their_column_names(tmp_path, monkeypatch):
    from benchmarks import performance_tables
    (tmp_path / "runs.txt").write_text(
        "command: c\nversions: v\nmachine: m; load average at the end 1.00\ndate: d\n\n"
        "contender                    examples/s  x MG loop\n"
        "runner 2                          203.8           \n"
        "Model Garden loop 3                40.7       1.00\n"
        "runner 2 / Model Garden loop: 5.01x\n", encoding="utf-8")
    monkeypatch.setattr(performance_tables, "PERFORMANCE", str(tmp_path))
    columns, rows = performance_tables.Output("runs.txt").table("contender")
    # A name ending in a digit and an empty last cell: the digit stays in the name.
    assert rows == {"runner 2": ["203.8", ""], "Model Garden loop 3": ["40.7", "1.00"]}
    (tmp_path / "twice.txt").write_text(
        "command: c\nversions: v\nmachine: m; load 1\ndate: d\n\n"
        "optimizer  ms/step\nadam           1.0\nadam           2.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="two rows named 'adam'"):
        performance_tables.Output("twice.txt").table("optimizer")


def test_every_committed_benchmark_output_is_shown_on_a_page():
    from benchmarks import performance_tables
    shown = {name for page in PAGES
             for name in re.findall(r"<!-- generated: performance\.(\w+) -->", _read(page))}
    outputs = {name[:-len(".txt")] for name in performance_tables.names()}
    assert outputs and outputs <= shown, f"not on any page: {sorted(outputs - shown)}"


def test_readme_speed_figures_are_the_committed_ones():
    from benchmarks import performance_tables as perf
    lambs = (("k", "keras Lamb, same decay"), ("mg", "Model Garden LAMB (tf_keras)"))

    def ratios(name, row, anchors):
        columns, rows = perf.with_ratios(*perf.Output(name).table("optimizer"), anchors)
        return rows[row][-len(anchors):]
    xla = ratios("optimizer_step_base.txt", "lamb_tf.Lamb", lambs)
    graph = ratios("optimizer_step_base_graph.txt", "lamb_tf.Lamb", lambs)
    jax_rows = perf.Output("jax_optimizer_step_base.txt").table("optimizer")[1]
    jax = jax_rows["lamb_tf.Lamb, plain norms"]
    readme = " ".join(_read(README).split())
    assert (f"under XLA ours takes {xla[0]}x the time of Keras's Lamb and {xla[1]}x Model "
            f"Garden's LAMB; with TensorFlow's graph kernels {graph[0]}x and {graph[1]}x; on JAX "
            f"it is level with Keras's Lamb ({jax[2]}x) and takes {jax[3]}x `optax.lamb`'s"
            ) in readme


def test_a_benchmark_output_without_its_header_is_refused(tmp_path, monkeypatch):
    from benchmarks import performance_tables
    (tmp_path / "bare.txt").write_text("optimizer  ms/step\nx  1.0\n", encoding="utf-8")
    monkeypatch.setattr(performance_tables, "PERFORMANCE", str(tmp_path))
    with pytest.raises(ValueError, match="no command, versions, machine, date line"):
        performance_tables.Output("bare.txt")
