# Copyright (c) mmpetl contributors. All rights reserved.
"""The base class of every error a user's input causes.

A config, checkpoint, annotation file or option that mmpetl cannot use
raises a subclass of :class:`InputError` whose first line names what is
wrong and what to do. The tools print that line and exit with status 2;
anything else escaping a tool is a bug in mmpetl or in the stack below it.
Each subclass also derives from the built-in error it always was
(``ValueError``, ``KeyError``, ``RuntimeError``), so existing ``except``
clauses keep working.
"""


class InputError(Exception):
    """Unusable user input; the first line of the message says why."""


class UnknownNameError(InputError, KeyError):
    """A name that is not among the known ones (a task, a data set, an
    attach-site kind, a serving task); the message lists the known ones.

    ``str()`` gives the message itself, not ``KeyError``'s quoted repr.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


__all__ = ['InputError', 'UnknownNameError']
