"""The exception types that scripts turn into one-line messages (utils/cli.run_main)."""


class UserError(RuntimeError):
    """A problem the user can fix (bad input, missing file); the message says how."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C, with a message that says what the run saved; run_main prints it
    as one line and exits 130. A KeyboardInterrupt, so callers that catch
    Ctrl-C keep working."""
