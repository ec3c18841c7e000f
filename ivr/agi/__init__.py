"""FastAGI: the wire protocol (server side), the command API flows use, and reply parsing."""
from ivr.agi.errors import (AgiError, AgiCommandFailed, AgiConnectionLost, AgiDeadChannel,  # noqa: F401
                            AgiInvalidCommand, AgiTimeout, AgiUsageError, ChannelHungUp)
from ivr.agi.reply import AgiReply, parse_reply_line  # noqa: F401
