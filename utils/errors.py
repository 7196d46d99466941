"""The project's error base: a problem the user can fix, reported in one line.

Every typed error of the project (a bad checkpoint, dataset, video, results file, query
file or setting) derives from ``PipsError``. The library raises them; the scripts let
``utils.cli.run`` print them as ``error: <message>`` with exit status 1, without a
traceback. Programming errors are not ``PipsError`` and keep their traceback.
"""


def error_line(exc):
    """The one line that reports a problem to a person: ``error: <message>``; an
    ``OSError`` (a full disk, a read-only folder) names its file."""
    if isinstance(exc, OSError):
        where = f'{exc.filename}: ' if exc.filename else ''
        return f'error: {where}{exc.strerror or exc}'
    return f'error: {exc}'


class PipsError(Exception):
    """A problem with the user's input, files or settings; its message names the file or the
    setting and says what is wrong."""


class SettingsError(PipsError, ValueError):
    """An argument or setting that cannot work (a size, count, choice or path)."""
