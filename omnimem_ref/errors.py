"""User-facing errors.

Anything a user can get wrong (a missing file, a corrupt clip, an impossible budget) raises
:class:`OmniMemError` with one plain sentence that says what is wrong and what to do. The command
line prints that sentence and exits non-zero, without a traceback; bugs still raise ordinary
exceptions so they are not hidden.
"""


class OmniMemError(Exception):
    """A problem with the user's input, explained in one sentence."""
