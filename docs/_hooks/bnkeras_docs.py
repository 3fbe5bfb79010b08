"""MkDocs hook of the bnkeras documentation (mkdocs.yml `hooks:`).

- Lays bnkeras out as one package for mkdocstrings: setup.cfg installs export/ as
  bnkeras.export and training/ as bnkeras.training, which griffe cannot see in the source
  tree. build/docs-src/bnkeras/ holds links to bnkeras/'s entries and to those two folders.
- Replaces `<!-- bnkeras:config-keys -->` with the table of every config key, and
  `<!-- bnkeras:presets -->` with the presets, read from training/config.py and
  training/configs/*.yaml when the site is built, so the pages cannot drift from the code.
- Warns (an error under `mkdocs build --strict`) when a name of a public `__all__` has no
  `::: name` entry in the API reference.

training/config.py is loaded without the bnkeras package's `__init__` (which imports
TensorFlow): the packages are stand-ins with the real `__path__`, removed afterwards.
"""

import ast
import dataclasses
import importlib
import logging
import re
import shutil
import sys
import types
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / "build" / "docs-src"
# where each part of the `bnkeras` package lives in the source tree (setup.cfg package_dir)
PACKAGE_DIRS = {"bnkeras": "bnkeras", "bnkeras.export": "export", "bnkeras.training": "training"}
# the modules whose `__all__` is the public API; each name needs a `::: module.name` entry
PUBLIC_MODULES = {
    "bnkeras": "bnkeras/__init__.py",
    "bnkeras.export": "export/__init__.py",
    "bnkeras.training": "training/__init__.py",
}
API_PAGE = "api.md"

log = logging.getLogger("mkdocs.hooks.bnkeras")


# ------------------------------------------------------------------ source layout


def _stage_sources():
    """build/docs-src/bnkeras: links to bnkeras/*, export/ and training/ (copies where
    links are not allowed)."""
    target = STAGE / "bnkeras"
    shutil.rmtree(STAGE, ignore_errors=True)
    target.mkdir(parents=True)
    entries = {p.name: p for p in (ROOT / "bnkeras").iterdir() if p.name != "__pycache__"}
    for name, folder in PACKAGE_DIRS.items():
        if name != "bnkeras":
            entries[name.rsplit(".", 1)[1]] = ROOT / folder
    for name, source in entries.items():
        try:
            (target / name).symlink_to(source, target_is_directory=source.is_dir())
        except OSError:
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, target / name)


# ------------------------------------------------------------- the config module


def _load_config_module():
    """training/config.py, imported without running bnkeras/__init__.py."""
    saved = {name: module for name, module in sys.modules.items() if name.startswith("bnkeras")}
    for name in saved:
        del sys.modules[name]
    try:
        for name, folder in PACKAGE_DIRS.items():
            if name == "bnkeras.export":
                continue
            package = types.ModuleType(name)
            package.__path__ = [str(ROOT / folder)]
            sys.modules[name] = package
        return importlib.import_module("bnkeras.training.config")
    finally:
        for name in [n for n in sys.modules if n.startswith("bnkeras")]:
            del sys.modules[name]
        sys.modules.update(saved)


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _literal(value):
    """`value` as written in a YAML config."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return ".inf" if value == float("inf") else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_literal(v)}" for k, v in value.items()) + "}"
    return str(value)


def _value(value):
    return f"`{_literal(value)}`"


def _valid(check):
    if hasattr(check, "describe"):
        return check.describe()
    if hasattr(check, "options"):  # Choice
        options = check.options()
        return "one of " + ", ".join(_value(o) for o in options)
    if hasattr(check, "low"):  # ClipBound
        return f"`warmup`, `.inf` or a number >= {check.low:g}"
    return ""


def config_keys_table():
    """One table per config section: key, default, valid values, meaning."""
    config = _load_config_module()
    resumable = set(getattr(config, "RESUMABLE_CHANGES", ()))
    parts = []
    for section, cls in config.SECTIONS.items():
        defaults = config.DEFAULTS[section]
        lines = [
            f"## {section}",
            "",
            "| key | default | valid values | meaning |",
            "|---|---|---|---|",
        ]
        for field in dataclasses.fields(cls):
            name = f"{section}.{field.name}"
            doc = field.metadata.get("doc", "")
            if name in resumable:
                doc = f"{doc} (may change on resume)" if doc else "may change on resume"
            lines.append(
                f"| `{name}` | {_cell(_value(defaults[field.name]))} "
                f"| {_cell(_valid(field.metadata['check']))} | {_cell(doc)} |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def presets_table():
    """Keys by presets: the value each preset sets (blank: the default)."""
    config = _load_config_module()
    presets = {
        path.stem: yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for path in sorted((ROOT / "training" / "configs").glob("*.yaml"))
    }
    lines = [
        "| key | " + " | ".join(presets) + " |",
        "|---|" + "---|" * len(presets),
    ]
    for section, defaults in config.DEFAULTS.items():
        for key in defaults:
            values = [(data.get(section) or {}).get(key, _UNSET) for data in presets.values()]
            if all(v is _UNSET for v in values):
                continue
            cells = ["" if v is _UNSET else _cell(_value(v)) for v in values]
            lines.append(f"| `{section}.{key}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_UNSET = object()


# ------------------------------------------------------------ public names check


def public_names():
    """`module.name` for every name of the public `__all__`s (read statically)."""
    names = []
    for module, path in PUBLIC_MODULES.items():
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        for node in tree.body:
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets if t):
                value = node.value
                if isinstance(value, ast.List):  # ["a", *sorted(_PUBLIC), ...]
                    for item in value.elts:
                        if isinstance(item, ast.Constant):
                            names.append(f"{module}.{item.value}")
                        elif isinstance(item, ast.Starred):
                            mapping = _module_dict(tree, item.value)
                            names.extend(f"{module}.{n}" for n in mapping)
    return [n for n in names if not n.rsplit(".", 1)[1].startswith("__")]


def _module_dict(tree, expression):
    """The literal dict a `*sorted(NAME)` in `__all__` refers to."""
    name = next(n.id for n in ast.walk(expression) if isinstance(n, ast.Name) and n.id != "sorted")
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise ValueError(f"{name} is not a literal in the module")


# ------------------------------------------------------------------ mkdocs events


def on_startup(command, dirty, **kwargs):
    # before mkdocstrings reads its `paths` (it drops a folder that does not exist)
    _stage_sources()


def on_pre_build(config, **kwargs):
    _stage_sources()  # `mkdocs serve`: files added since the last build


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri.startswith("results/"):
        # written by `bnkeras reproduce`, wide tables: the whole width, no table of contents
        page.meta.setdefault("hide", ["toc"])
    if "<!-- bnkeras:config-keys -->" in markdown:
        markdown = markdown.replace("<!-- bnkeras:config-keys -->", config_keys_table())
    if "<!-- bnkeras:presets -->" in markdown:
        markdown = markdown.replace("<!-- bnkeras:presets -->", presets_table())
    if page.file.src_uri == API_PAGE:
        documented = set(re.findall(r"^::: *([\w.]+)", markdown, flags=re.MULTILINE))
        for name in public_names():
            if name not in documented:
                log.warning(f"public name {name} has no `::: {name}` entry in docs/{API_PAGE}")
    return markdown
