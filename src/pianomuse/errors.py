"""The exceptions for mistakes a user can make; the CLI and the web API print their message
alone (one line), never a traceback."""


class UserError(Exception):
    """Bad input from the user (a path, a file, an option); the message is one line, and a
    short one: a long value the user gave is not quoted back whole."""

    def __init__(self, message: str = ""):
        super().__init__(_short(str(message)))


def _short(text: str, most: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= most else line[: most - 1] + "…"


class FieldError(UserError, ValueError):
    """A bad value of one setting. `field` is its Python name (a keyword of the copilot or of
    `Sampling`), so the command line can name its option and the web API its JSON field."""

    def __init__(self, field: str, problem: str):
        problem = _short(problem, 240)
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem
