"""The one exception type for bad input from a user."""


class HeadcoopError(ValueError):
    """Bad input from a user: a malformed string, a bad config field, a missing or corrupt file.

    The message is one line that names the problem; the CLI prints it and exits non-zero
    without a traceback.
    """
