"""For the install tests: this project's wheel, built from a copy of its sources, and a fresh
virtual environment to install it into."""

import glob
import os
import shutil
import site
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


def installed_package_dirs():
    """The site-packages directories of the interpreter running the tests, where the README's
    `pip install -e ".[dev]"` put the dependencies: a virtual environment's own when the tests run
    in one (with its base interpreter's if it was made with --system-site-packages)."""
    dirs = [path for path in site.getsitepackages() if os.path.isdir(path)]
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return dirs


def make_venv_over_installed_packages(path):
    """The interpreter of a fresh virtual environment at `path` that sees, after its own
    site-packages, the packages of the environment running the tests, so that an install into it
    with `--no-index` finds the dependencies already installed and downloads nothing.

    `python -m venv --system-site-packages` is not that: run from inside a virtual environment it
    reaches the *base* interpreter's site-packages, not the environment the user installed into.
    A .pth line that adds each directory with `site.addsitedir` also runs their own .pth files
    (namespace packages, editable installs), as the running interpreter does. Installs into the
    new environment go to its own site-packages; pip leaves packages outside it alone."""
    done = subprocess.run([sys.executable, "-m", "venv", path], capture_output=True, text=True)
    assert done.returncode == 0, f"venv failed:\n{done.stdout}\n{done.stderr}"
    python = os.path.join(path, "bin", "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    # One line: site.py runs a .pth line that starts with "import" and reads the rest as paths.
    additions = "".join(f"site.addsitedir({directory!r}); "
                        for directory in installed_package_dirs())
    with open(os.path.join(purelib, "installed_packages_of_the_tests.pth"), "w") as file:
        file.write(f"import site; {additions}\n")
    return python
