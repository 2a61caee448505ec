"""Builds this project's wheel from a copy of its sources, for the fresh-venv install tests."""

import glob
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("setup.py", "README.md", "lamb_tf", "trainers", "configs")


def build_wheel(root):
    """The wheel's path, built under `root` from a copy of the sources (the copy keeps the
    checkout's build leftovers, egg-info and bytecode, out of it)."""
    source = os.path.join(root, "source")
    os.makedirs(source)
    for name in SOURCES:
        path = os.path.join(REPO, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(source, name),
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(path, os.path.join(source, name))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", os.path.join(root, "dist"),
                           source], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    return glob.glob(os.path.join(root, "dist", "*.whl"))[0]
