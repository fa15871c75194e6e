"""The one exception type users see."""


class AudioclsError(Exception):
    """Report a problem the user can fix: the message names the file or value and what to do."""
