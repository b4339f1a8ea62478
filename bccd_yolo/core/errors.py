"""The one exception type users see: a one-line message naming the file and the problem."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable


class InputError(Exception):
    """Bad input that the CLI reports as one line and a non-zero exit, without a traceback.

    `option` names the setting at fault; `{name}` in the message names a setting that would fix it. Both read
    as plain names from the library (`overwrite`) and as flags from the command line (`--overwrite`).
    """

    def __init__(self, path: str | Path | None, problem: str, option: str | None = None):
        self.path = None if path is None else str(path)
        self.template = problem
        self.option = option
        super().__init__(self.render(lambda name: name))

    @property
    def problem(self) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: m.group(1), self.template)

    def render(self, setting: Callable[[str], str]) -> str:
        """The message with settings spelled by `setting` (e.g. name -> --name), the option at fault first."""
        text = re.sub(r"\{(\w+)\}", lambda m: setting(m.group(1)), self.template)
        lead = f"{setting(self.option)} " if self.option else ""
        return f"{lead}{self.path}: {text}" if self.path else f"{lead}{text}"
