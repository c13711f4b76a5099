"""Errors a user can fix. The CLI prints them without a traceback and exits with code 2."""


class UserError(Exception):
    """Bad input from the user: a file, key, value, run id or option. The message names the cause."""

    exit_code = 2
