"""The one user-error type: anything a user can fix (bad data, bad option, missing model, unusable folder).

Every such error in rewardlab derives from `RewardlabError`; the CLI prints its message in one or a few
lines and exits with status 2, without a traceback (``--debug`` shows one). Anything else is a bug.
Subclasses keep their historical built-in bases (``ValueError`` and so on) so existing ``except`` clauses
still work.
"""

from __future__ import annotations


class RewardlabError(Exception):
    """An error the user can fix; its message names the file/record/field and what to do."""


class ConfigError(RewardlabError, ValueError):
    """An option, flag or configuration value that cannot be used as given."""


class UserFileError(RewardlabError, OSError):
    """A file or folder the user named is missing, unreadable or in the wrong state."""
