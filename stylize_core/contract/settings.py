"""The settings of one stylization: a dataclass with one field per option of options.py."""

from __future__ import annotations

import dataclasses

from .errors import InputError
from .options import OPTIONS


class _SettingsMethods:
    def validate(self, n_styles: int = 1) -> "Settings":
        """Raise InputError naming the first bad value; return self for chaining."""
        for option in OPTIONS:
            problem = option.problem(getattr(self, option.name))
            if problem:
                raise InputError(problem)
        if self.style_weights is not None:
            if len(self.style_weights) != n_styles:
                raise InputError(f"got {len(self.style_weights)} style weights for {n_styles} style images")
            if sum(self.style_weights) <= 0:
                raise InputError("style weights must not all be zero")
        return self

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


def _field(option):
    hint = option.type.__name__
    if option.many:
        hint = f"list[{hint}]"
    if option.optional:
        hint += " | None"
    return option.name, hint, dataclasses.field(default=option.default, metadata={"help": option.help})


Settings = dataclasses.make_dataclass(
    "Settings", [_field(option) for option in OPTIONS], bases=(_SettingsMethods,),
    namespace={"__doc__": "Everything that shapes the result (options.py says what each field means). "
                          "Defaults give a good picture untouched.",
               "__module__": __name__})
