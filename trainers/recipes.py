"""The recipes of `configs/` by name: `--config_file=tiny_wiki_lamb` or `bert/tiny_wiki_lamb`.

A clone reads them from `configs/` beside the package; a wheel carries the same files as
`trainers/configs/` (setup.py maps one onto the other, so there is one copy to keep). A path to
an existing file always wins over a name.
"""

import os

import tensorflow as tf

_PACKAGED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_CLONE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _root():
    for root in (_PACKAGED, _CLONE):
        if os.path.isdir(os.path.join(root, "bert")):
            return root
    return None


def available():
    """{"task/name": path} of every recipe."""
    root = _root()
    if root is None:
        return {}
    found = {}
    for task in sorted(os.listdir(root)):
        folder = os.path.join(root, task)
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                if name.endswith(".yaml"):
                    found[f"{task}/{name[:-len('.yaml')]}"] = os.path.join(folder, name)
    return found


def resolve(value, task=None):
    """The file `value` names: itself if it exists, else the recipe of that name (`task`'s
    first where a bare name fits several tasks); FileNotFoundError listing the recipes."""
    if tf.io.gfile.exists(value):
        return value
    recipes = available()
    name = value[:-len(".yaml")] if value.endswith(".yaml") else value
    name = name.replace(os.sep, "/")
    if name.startswith("configs/"):  # a clone's path, run from another directory
        name = name[len("configs/"):]
    matches = [key for key in recipes if key == name or key.split("/", 1)[1] == name]
    if len(matches) > 1 and task:
        matches = [key for key in matches if key.startswith(f"{task}/")] or matches
    if len(matches) == 1:
        return recipes[matches[0]]
    if len(matches) > 1:
        raise FileNotFoundError(f"Config file {value} names several recipes "
                                f"({', '.join(matches)}); give one with its folder.")
    listing = ", ".join(recipes) or "none are installed"
    raise FileNotFoundError(f"Config file {value} does not exist, and no recipe has that name. "
                            f"Recipes: {listing}.")
