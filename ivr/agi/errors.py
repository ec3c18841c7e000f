"""What can go wrong on a FastAGI session, as exceptions a flow can catch.

Every one is an AgiError, so a flow that only wants "the call is over or broken" catches that.
"""


class AgiError(Exception):
    """Base of every FastAGI failure."""


class AgiInvalidCommand(AgiError):
    """510: Asterisk does not know the command."""


class AgiDeadChannel(AgiError):
    """511: the command is not permitted on a dead channel (the caller has hung up)."""


class AgiUsageError(AgiError):
    """520: the command's syntax was wrong; `usage` holds Asterisk's multi-line help."""

    def __init__(self, message: str, usage: list[str]):
        super().__init__(message)
        self.usage = usage


class AgiCommandFailed(AgiError):
    """200 with result=-1 where -1 means failure (not hang-up), or another unusable reply."""


class ChannelHungUp(AgiError):
    """The caller hung up (result=-1 on a media command, or the unsolicited HANGUP line)."""


class AgiTimeout(AgiError):
    """No reply within the per-command deadline: the session is out of step and is closed."""


class AgiConnectionLost(AgiError):
    """The socket closed while a command was in flight."""
