"""Errors that are the user's to fix: the CLI prints their one-sentence message and exits with status 2."""


class UserError(Exception):
    """Bad input (a path, an option, a file): the message names it and says what to do."""


class DataError(UserError):
    """A data set that cannot be used as given (missing folder, no images, unreadable files)."""
