"""The performance page's tables, made from the benchmarks' committed outputs.

Each timing benchmark run with `--output=benchmarks/results/performance/NAME.txt` (see
`benchmarks/result_file.py`) leaves what it printed under a header naming the command, the
versions, the machine and the date. The functions here turn such a file back into the page's
markdown: a benchmark's table of `name  number  number ...` rows becomes a markdown table, and
every table carries the provenance of the file it came from, so the page cannot quote a figure
its file does not hold. `benchmarks/docs_tables.py` calls them for the page's generated regions.
"""

import os
import re

PERFORMANCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "performance")
HEADER_KEYS = ("command", "versions", "machine", "date")


class Output:
    """One committed benchmark output: its header fields and the lines the benchmark printed."""

    def __init__(self, name):
        self.name = name
        self.path = f"benchmarks/results/performance/{name}"
        with open(os.path.join(PERFORMANCE, name)) as f:
            text = f.read()
        head, _, body = text.partition("\n\n")
        self.header = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
        missing = [key for key in HEADER_KEYS if key not in self.header]
        if missing:
            raise ValueError(f"{self.path} has no {', '.join(missing)} line in its header; "
                             "rerun its benchmark with --output")
        self.lines = body.splitlines()

    def line_starting(self, prefix):
        """The first printed line that starts with `prefix`."""
        for line in self.lines:
            if line.startswith(prefix):
                return line
        raise ValueError(f"{self.path} printed no line starting {prefix!r}")

    def table(self, first_column):
        """The printed table whose header line starts with `first_column`, as (column names,
        {row name: [numbers as printed]}). A row is a name (which may hold spaces) followed by
        as many numbers as the header has columns after the first."""
        header = self.line_starting(first_column)
        columns = re.split(r"\s{2,}", header.strip())
        rows = {}
        for line in self.lines[self.lines.index(header) + 1:]:
            parts = line.rsplit(None, len(columns) - 1)
            if len(parts) != len(columns) or not all(_is_number(p) for p in parts[1:]):
                break
            rows[parts[0].strip()] = parts[1:]
        if not rows:
            raise ValueError(f"{self.path}: no rows under the table {first_column!r}")
        return columns, rows


def _is_number(text):
    return re.fullmatch(r"-?[\d.]+x?|nan|inf", text) is not None


def provenance(*outputs):
    """The lines under a table that say which files it comes from and how they were made."""
    lines = []
    for output in outputs:
        h = output.header
        lines.append(f"*`{output.path}`: `{h['command']}`; {h['date']}; {h['machine']}; "
                     f"{h['versions']}.*")
    return "\n" + "\n\n".join(lines) + "\n"


def _ours(name):
    return f"**{name}**" if name.startswith("lamb_tf") else name


def with_ratios(columns, rows, time_column, ratios_to):
    """`columns` and `rows` with a column per (heading, row name) of `ratios_to`: each row's
    `time_column` over that row's, to two decimals."""
    rows = {name: list(row) for name, row in rows.items()}
    if not ratios_to:
        return columns, rows
    index = columns.index(time_column) - 1
    for heading, anchor in ratios_to:
        if anchor not in rows:
            raise ValueError(f"no row {anchor!r} to divide by; rows: {list(rows)}")
        reference = float(rows[anchor][index])
        for row in rows.values():
            row.append(f"{float(row[index]) / reference:.2f}")
    return columns + [heading for heading, _ in ratios_to], rows


def markdown_table(name, first_column, keep, ratios_to=(), time_column="ms/step"):
    """The table a benchmark printed, in markdown: a row per contender with the columns named in
    `keep`, then the ratio of `time_column` to each row named in `ratios_to` ((heading, row
    name) pairs), so prose need not divide figures by hand."""
    output = Output(name)
    columns, rows = with_ratios(*output.table(first_column), time_column, ratios_to)
    keep = list(keep) + [heading for heading, _ in ratios_to]
    lines = ["| " + " | ".join([first_column] + keep) + " |", "|---|" + "---:|" * len(keep)]
    for contender, row in rows.items():
        cells = [row[columns.index(column) - 1] for column in keep]
        lines.append("| " + " | ".join([_ours(contender)] + cells) + " |")
    return "\n".join(lines) + "\n" + provenance(output)


def printed(name, start=None, stop=None):
    """What a benchmark printed, verbatim in a text block: all of it, or from the first line
    starting with `start` up to the line before the one starting with `stop`."""
    output = Output(name)
    lines = output.lines
    if start is not None:
        lines = lines[lines.index(output.line_starting(start)):]
    if stop is not None:
        lines = lines[:lines.index(output.line_starting(stop))]
    body = "\n".join(line for line in lines if not line.startswith("wrote "))
    return "```text\n" + body.strip("\n") + "\n```\n" + provenance(output)
