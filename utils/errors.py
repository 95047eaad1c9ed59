"""The one exception type that scripts turn into a one-line message."""


class UserError(RuntimeError):
    """A problem the user can fix (bad input, missing file); the message says how."""
