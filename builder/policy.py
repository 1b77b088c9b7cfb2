"""Which repositories this service builds: ban and allow lists of regular expressions.

As BinderHub's ``banned_specs`` and ``allowed_specs``: each pattern is matched with
``re.match`` (anchored at the start, case-insensitive) against the spec
``<repository URL>/<ref as asked>``, for example ``https://github.com/group/repo.git/main``.
A spec matching a banned pattern is refused; when ``allowed_specs`` is not empty, a spec that
matches none of them is refused too. A publication launched by DOI is checked with the
repository and ref it was registered with.
"""

from __future__ import annotations

import re

from traitlets import List, Unicode, observe
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError


class SpecPolicy(LoggingConfigurable):
    banned_specs = List(
        Unicode(),
        help="Regular expressions of specs ('<repository URL>/<ref>') that are never built or launched, "
        r"for example r'https://github\.com/someone/.*'. They win over allowed_specs.",
    ).tag(config=True)
    allowed_specs = List(
        Unicode(),
        help="If not empty, only specs matching one of these regular expressions are built or launched, "
        r"for example r'https://git\.facility\.eu/.*'.",
    ).tag(config=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._compile()

    @observe("banned_specs", "allowed_specs")
    def _compile(self, change: object = None) -> None:
        try:
            self._banned = [re.compile(p, re.IGNORECASE) for p in self.banned_specs]
            self._allowed = [re.compile(p, re.IGNORECASE) for p in self.allowed_specs]
        except re.error as e:
            raise ValueError(f"SpecPolicy: invalid regular expression {e.pattern!r}: {e}") from e

    def allows(self, spec: str) -> bool:
        if any(p.match(spec) for p in self._banned):
            return False
        return not self._allowed or any(p.match(spec) for p in self._allowed)

    def check(self, repo_url: str, ref: str) -> None:
        """Raise PanbinderError (403) when the repository at this ref may not be used here."""
        if not repo_url:
            return  # not known yet (a DOI before its publication is looked up)
        spec = f"{repo_url}/{ref}"
        if not self.allows(spec):
            raise PanbinderError(
                f"The repository {repo_url} is not allowed on this service; "
                "contact the operators if you think it should be.",
                reason="banned_spec",
                log_message=f"spec refused by the ban/allow lists: {spec}",
                status_code=403,
            )
