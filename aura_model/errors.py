"""The one exception type users of the library need to catch.

Every failure caused by the user's input (a file, a model path, a setting)
raises :class:`AuraError` with a message that names the bad thing and, where
possible, what to do about it. The CLI prints the message as one line; the GUI
shows it in a dialog. Programming errors stay ordinary exceptions.
"""


class AuraError(Exception):
    """A clear, user-facing error: bad audio, missing or mismatched model, bad setting."""
