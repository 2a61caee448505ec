"""The performance page's tables, made from the benchmarks' committed outputs.

Each timing benchmark run with `--output=benchmarks/results/performance/NAME.txt` leaves what it
printed under a header naming the command, the versions, the machine and the date
(`benchmarks/result_file.py`). The functions here turn such a file back into the page's markdown:
a benchmark's table becomes a markdown table, other output is shown as printed, and each carries
the file it came from, so the page cannot quote a figure its file does not hold.
`benchmarks/docs_tables.py` calls them for the page's generated regions.
"""

import os
import re

from benchmarks import result_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERFORMANCE = os.path.join(REPO, "benchmarks", "results", "performance")
_NUMBER = re.compile(r"-?\d+(\.\d+)?x?|nan|inf")


def names():
    """The committed outputs, by file name."""
    return sorted(name for name in os.listdir(PERFORMANCE) if name.endswith(".txt"))


class Output:
    """One committed benchmark output: its header fields and the lines the benchmark printed."""

    def __init__(self, name, folder=None):
        folder = folder or PERFORMANCE  # read when called: the tests point it elsewhere
        self.path = os.path.relpath(os.path.join(folder, name), REPO)
        self.header, self.lines = result_file.read(os.path.join(folder, name))

    def line_starting(self, prefix):
        """The first printed line that starts with `prefix`."""
        for line in self.lines:
            if line.startswith(prefix):
                return line
        raise ValueError(f"{self.path} printed no line starting {prefix!r}")

    def table(self, first_column):
        """The printed table whose header line starts with `first_column`, as (column names,
        {row name: [cells as printed]}). The benchmarks right-align each number under the end
        of its column's name, so a cell is read at that position; a name may hold spaces and
        digits, and a cell may be empty. The table ends at the first line that is not such a
        row."""
        header = self.line_starting(first_column)
        columns = re.split(r"\s{2,}", header.strip())
        ends, position = [], 0
        for column in columns[1:]:
            position = header.index(column, position) + len(column)
            ends.append(position)
        rows = {}
        for line in self.lines[self.lines.index(header) + 1:]:
            row = _row(line, ends)
            if row is None:
                break
            name, cells = row
            if name in rows:
                raise ValueError(f"{self.path}: two rows named {name!r}")
            rows[name] = cells
        if not rows:
            raise ValueError(f"{self.path}: no rows under the table {first_column!r}")
        return columns, rows


def _row(line, ends):
    """(name, cells) of a table row whose cells end at `ends`, or None if `line` is not one."""
    cells, first = [], len(line)
    for end in ends:
        if end > len(line) or line[end - 1] == " ":
            cells.append("")
            continue
        start = line.rfind(" ", 0, end) + 1
        cells.append(line[start:end])
        first = min(first, start)
    name = line[:first].strip()
    filled = [cell for cell in cells if cell]
    if not name or not filled or not all(_NUMBER.fullmatch(cell) for cell in filled):
        return None
    if line[first:].split() != filled:  # text outside the columns: not a row of this table
        return None
    return name, cells


def with_ratios(columns, rows, ratios_to):
    """`columns` and `rows` with a column per (heading, row name) of `ratios_to`: each row's
    ms/step over that row's, to two decimals (from the printed, rounded ms)."""
    rows = {name: list(row) for name, row in rows.items()}
    if not ratios_to:
        return columns, rows
    index = columns.index("ms/step") - 1
    for heading, anchor in ratios_to:
        if anchor not in rows:
            raise ValueError(f"no row {anchor!r} to divide by; rows: {list(rows)}")
        reference = float(rows[anchor][index])
        for row in rows.values():
            row.append(f"{float(row[index]) / reference:.2f}")
    return columns + [heading for heading, _ in ratios_to], rows


def provenance(output):
    """The line under a table that names its file, the command, the date and the load."""
    load = output.header["machine"].rpartition("; ")[2]
    return f"\n*`{output.path}`: `{output.header['command']}`, {output.header['date']}, {load}.*\n"


def _ours(name):
    return f"**{name}**" if name.startswith("lamb_tf") else name


def markdown_table(name, first_column, keep, ratios_to=()):
    """The table a benchmark printed, in markdown: a row per contender with the columns named in
    `keep`, then the ratio of its ms/step to each row named in `ratios_to` ((heading, row
    name) pairs), so prose need not divide figures by hand."""
    output = Output(name)
    columns, rows = with_ratios(*output.table(first_column), ratios_to)
    keep = list(keep) + [heading for heading, _ in ratios_to]
    lines = ["| " + " | ".join([first_column] + keep) + " |", "|---|" + "---:|" * len(keep)]
    for contender, row in rows.items():
        cells = [row[columns.index(column) - 1] for column in keep]
        lines.append("| " + " | ".join([_ours(contender)] + cells) + " |")
    return "\n".join(lines) + "\n" + provenance(output)


def printed(name, folder=None):
    """What a benchmark printed, verbatim in a text block."""
    output = Output(name, folder)
    return "```text\n" + "\n".join(output.lines).strip("\n") + "\n```\n" + provenance(output)


def machines():
    """The machines and versions the committed outputs were measured with, each once, with the
    files that say so when they are not all alike."""
    seen = {}
    for name in names():
        header = Output(name).header
        key = (header["machine"].rpartition("; ")[0], header["versions"])
        seen.setdefault(key, []).append(name)
    lines = []
    for (machine, versions), files in seen.items():
        where = "" if len(seen) == 1 else f" ({', '.join(files)})"
        lines.append(f"- {machine}; {versions}{where}")
    return "\n".join(lines) + "\n"
