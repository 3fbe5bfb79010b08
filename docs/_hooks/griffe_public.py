"""Griffe extension of the bnkeras docs: the lazily imported public names, seen statically.

`bnkeras`, `bnkeras.export` and `bnkeras.training` resolve their public names in a module
`__getattr__` (so that importing them stays light); griffe reads sources and does not run
it. This extension adds each such name as an alias: the names of each package's `_PUBLIC`
(a literal dict, name -> module), and every other name of a package's `__all__` that the
package does not define, found in the one submodule that defines it.

It also renders the layers' Keras-style `Call arguments:` section (not a section griffe
knows: it shows it as a note) as a list, one item per argument, instead of one paragraph.
"""

import ast
import re

import griffe

CALL_ARGUMENTS = re.compile(r"^Call arguments:\n((?:(?: {4}.*)?\n)+?)(?=\S|\Z)", re.MULTILINE)
ARGUMENT = re.compile(r"^ {4}(\w+): ", re.MULTILINE)


def _listed(match):
    body = ARGUMENT.sub(lambda m: f"    - `{m.group(1)}`: ", match.group(1))
    body = re.sub(r"^ {8}", "      ", body, flags=re.MULTILINE)
    return f"Call arguments:\n{body}"


class PublicNames(griffe.Extension):
    def on_class_instance(self, *, cls, **kwargs):
        if cls.docstring is not None and "Call arguments:" in cls.docstring.value:
            value = (
                cls.docstring.value
                if cls.docstring.value.endswith("\n")
                else cls.docstring.value + "\n"
            )
            cls.docstring.value = CALL_ARGUMENTS.sub(_listed, value)

    def on_package(self, *, pkg, **kwargs):
        if pkg.path != "bnkeras":
            return
        packages = [pkg, *(m for m in pkg.modules.values() if m.is_init_module)]
        for module in packages:
            _alias_public(module)
            _alias_lazy_names(module)
        for module in packages:
            _check_docstrings(module)


def _alias_public(package):
    """Aliases of the names of a package's `_PUBLIC` (name -> module: a full path in
    bnkeras, a submodule's name in bnkeras.export and bnkeras.training)."""
    public = package.members.get("_PUBLIC")
    if public is None:
        return
    for name, module in ast.literal_eval(str(public.value)).items():
        if name not in package.members:
            module = module if "." in module else f"{package.path}.{module}"
            package.set_member(name, griffe.Alias(name, f"{module}.{name}", parent=package))


def _alias_lazy_names(package):
    exported = package.members.get("__all__")
    if exported is None:
        return
    for name in _names(exported.value, package):
        if name in package.members:
            continue
        owners = [
            module
            for module in package.modules.values()
            if name in module.members and not module.members[name].is_alias
        ]
        if len(owners) == 1:
            package.set_member(name, griffe.Alias(name, f"{owners[0].path}.{name}", parent=package))


def _check_docstrings(package):
    """A warning (an error under `mkdocs build --strict`) for each public name of
    `package.__all__` without a docstring: its API entry would be empty."""
    exported = package.members.get("__all__")
    if exported is None:
        return
    for name in _names(exported.value, package):
        member = package.members.get(name)
        if member is None:
            continue
        try:
            target = member.final_target if member.is_alias else member
            target = target.final_target if target.is_alias else target
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue  # mkdocstrings reports what it cannot find
        if not (target.docstring and target.docstring.value.strip()):
            griffe.logger.warning(f"{package.path}.{name} has no docstring")


def _names(value, package):
    try:
        return [n for n in ast.literal_eval(str(value)) if isinstance(n, str)]
    except ValueError:  # bnkeras's [*sorted(_PUBLIC), ...]
        public = package.members.get("_PUBLIC")
        return list(ast.literal_eval(str(public.value))) if public is not None else []
