"""Each category of bad input to the command-line tools: exit code, one `error:` line, no
traceback. `python -m tests.bad_inputs` runs all cases (docs/reliability.md lists them); here, the
first case of each category that needs no pretrained model_dir (making one is a run of its own)."""

import pytest

from tests import bad_inputs

FIRST_OF_EACH_CATEGORY = {}
for _case in bad_inputs.CASES:
    if not any("{trained}" in argument for argument in _case[2]):
        FIRST_OF_EACH_CATEGORY.setdefault(_case[0], _case)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return bad_inputs.Files(str(tmp_path_factory.mktemp("bad_inputs")))


def test_there_are_at_least_forty_cases_in_every_category_the_issue_names():
    assert len(bad_inputs.CASES) >= 40
    assert {"flags", "config", "override", "values", "cluster", "model_dir", "train_data",
            "text_tool", "image_tool", "finetune", "export"} == set(FIRST_OF_EACH_CATEGORY)


@pytest.mark.parametrize("case", list(FIRST_OF_EACH_CATEGORY.values()),
                         ids=list(FIRST_OF_EACH_CATEGORY))
def test_a_bad_input_is_one_line_and_its_exit_code(case, files):
    problem = bad_inputs.judge(case, bad_inputs.run_case(case, files))
    assert problem is None, problem


def test_verbose_shows_the_traceback_behind_the_error_line(files):
    case = ("config", "trainers.bert", ["--config_file={missing}", "--verbose"], 1, "")
    code, _, output = bad_inputs.run_case(case, files)
    assert code == 1 and "Traceback" in output and "FileNotFoundError: Config file" in output
