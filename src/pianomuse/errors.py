"""The one exception type for mistakes a user can make; the CLI prints its message alone."""


class UserError(Exception):
    """Bad input from the user (a path, a file, an option); the message is one line."""
