"""Griffe extension of the bnkeras docs: the lazily imported public names, seen statically.

`bnkeras` and `bnkeras.training` resolve their public names in a module `__getattr__`
(so that importing them stays light); griffe reads sources and does not run it. This
extension adds each such name as an alias: the names of `bnkeras._PUBLIC` (a literal
dict, name -> module), and every other name of a package's `__all__` that the package
does not define, found in the one submodule that defines it. A name that is also a
submodule's (`bnkeras.training.evaluate`) stays the submodule.
"""

import ast

import griffe


class PublicNames(griffe.Extension):
    def on_package(self, *, pkg, **kwargs):
        if pkg.path != "bnkeras":
            return
        public = pkg.members.get("_PUBLIC")
        if public is not None:
            for name, module in ast.literal_eval(str(public.value)).items():
                if name not in pkg.members:
                    pkg.set_member(name, griffe.Alias(name, f"{module}.{name}", parent=pkg))
        for module in [pkg, *(m for m in pkg.modules.values() if m.is_init_module)]:
            _alias_lazy_names(module)


def _alias_lazy_names(package):
    exported = package.members.get("__all__")
    if exported is None:
        return
    try:
        names = [n for n in ast.literal_eval(str(exported.value)) if isinstance(n, str)]
    except ValueError:  # not a plain list of strings (bnkeras's own: handled above)
        return
    for name in names:
        if name in package.members:
            continue
        owners = [
            module
            for module in package.modules.values()
            if name in module.members and not module.members[name].is_alias
        ]
        if len(owners) == 1:
            package.set_member(name, griffe.Alias(name, f"{owners[0].path}.{name}", parent=package))
