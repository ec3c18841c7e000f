"""Asterisk Manager Interface: framing, the Twisted client and link, the server emulator.

Why our own client on Twisted rather than pyst2 or asterisk-ami: see dialplans/README.md.
"""
from gateway.ami.actionid import ActionIdGenerator, new_action_id
from gateway.ami.link import AmiLink, OriginateInterrupted, OriginateTimeout, ResyncSnapshot
from gateway.ami.message import AmiMessage, encode_action
from gateway.ami.parser import AmiParser
from gateway.ami.protocol import (AmiActionError, AmiAuthError, AmiClientProtocol,
                                  AmiConnectionLost, AmiError, AmiNotConnected, AmiResult,
                                  AmiTimeout)

__all__ = ["AmiMessage", "AmiParser", "encode_action", "AmiClientProtocol", "AmiLink",
           "AmiResult", "ResyncSnapshot", "ActionIdGenerator", "new_action_id", "AmiError",
           "AmiActionError", "AmiAuthError", "AmiTimeout", "AmiConnectionLost",
           "AmiNotConnected", "OriginateInterrupted", "OriginateTimeout"]
