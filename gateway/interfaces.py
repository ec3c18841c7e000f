"""The seams between Yihu's parts.

The domain (orders, feedback, escalation) talks to the transports only through these
interfaces, so that each side can be tested alone and swapped (real modem bank or emulator,
real Asterisk or the AMI emulator).  Every method that does I/O returns a Deferred.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from zope.interface import Attribute, Interface


# --- values crossing the seams -------------------------------------------------------------

@dataclass(frozen=True)
class InboundSms:
    """A received SMS (multi-part already reassembled), committed raw before it is passed on."""
    raw_id: int              # inbound_raw.id of the committed raw record
    sender: str              # E.164 where the number parsed, else as received
    text: str
    received_at: datetime    # timezone-aware UTC
    modem: str               # port or name of the modem that received it


@dataclass(frozen=True)
class KeypadAnswer:
    """A keypress that matters (an answer to an order), committed raw before it is passed on, or
    (raw_id None) handed to FeedbackEngine.keypad_answer_journalled, which commits it raw in the
    transaction that judges it."""
    raw_id: int | None
    caller: str              # E.164 of the phone on the call
    digit: str               # "1", "2", "3", "4", ... as pressed
    call_id: str             # Asterisk Uniqueid / our ChannelId
    received_at: datetime
    order_code: str | None = None   # known on an order call; keyed first on the feedback line
    identified_by: str = ""         # how the caller is known: order_call_token / caller_id / caller_id+pin


@dataclass(frozen=True)
class FeedbackOutcome:
    """What the feedback engine made of an answer; `message` is what to tell the person."""
    accepted: bool
    message: str                   # e.g. "已记录 0427 到达 10:32" or why it was refused
    order_code: str | None = None
    status: str | None = None      # received / assembled / arrived / finished / ...
    needs_code: bool = False       # ambiguous: the sender must name the order code


@dataclass(frozen=True)
class OriginateResult:
    """How an AMI Originate ended (from OriginateResponse)."""
    success: bool
    reason: int                    # Asterisk reason: 4 answered, 5 busy, 3 no answer, 1/8 congested, 0 failed
    channel: str | None = None
    uniqueid: str | None = None
    action_id: str | None = None
    headers: dict = field(default_factory=dict)


# --- interfaces -------------------------------------------------------------------------------

class IInboundSmsSink(Interface):
    def sms_received(sms: InboundSms):
        """Handle a received SMS; returns Deferred[FeedbackOutcome | None]."""


class IKeypadSink(Interface):
    def keypad_answer(answer: KeypadAnswer):
        """Record a keypad answer; returns Deferred[FeedbackOutcome]."""

    def open_orders_for(caller: str):
        """Open order codes for the team(s) of this phone; Deferred[list[str]]."""


@dataclass(frozen=True)
class SpokenReport:
    """A situation report spoken on the phone (keypad 5) and recorded by Asterisk."""
    raw_id: int              # the keypress, committed raw first
    caller: str
    order_code: str
    call_id: str
    audio_path: str          # as Asterisk wrote it (path and extension)
    seconds: float           # its length, from RECORD FILE's endpos
    received_at: datetime
    identified_by: str = ""


class ISituationSink(Interface):
    def situation_recorded(report: SpokenReport):
        """Keep a spoken situation report on the order's timeline; Deferred[FeedbackOutcome]."""


class ISmsOutbox(Interface):
    def enqueue(phone: str, text: str, *, purpose: str, order_id: int | None = None,
                delivery_id: int | None = None):
        """Commit a message to the persistent outbox; Deferred[message id] once committed."""

    def stage_tx(conn, now, phone: str, text: str, *, purpose: str, order_id: int | None = None,
                 delivery_id: int | None = None):
        """Inside the caller's transaction (a database thread): write the message queued with the
        caller's state change; returns a record for adopt()."""

    def adopt(records):
        """After the caller's COMMIT: send the messages stage_tx wrote."""


class IOriginator(Interface):
    def originate(channel: str, *, context: str, exten: str, priority: int = 1,
                  variables: dict | None = None, channel_id: str | None = None,
                  caller_id: str | None = None, timeout_ms: int = 30000):
        """Async Originate; Deferred[OriginateResult] fired by the matching OriginateResponse."""


class IEventSink(Interface):
    """Told of the events a transaction recorded, after its COMMIT (Database.add_event_listener).

    Parts do not publish events: they call gateway.eventlog.record_event(conn, kind, payload)
    in the transaction of the state change; the event log's tail reads them from the log."""
    def committed(events: list):
        """events: gateway.eventlog.Event, in id order, on the reactor thread. Never raises."""


class IClock(Interface):
    seconds = Attribute("IReactorTime.seconds")


class IOrderCaller(Interface):
    def call_order(order_code: str, phone: str, *, order_id: int, team_id: int,
                   member_id: int | None = None, purpose: str = "order", delivery_id: int | None = None):
        """Place a voice call that reads the order and takes a keypad answer.

        delivery_id: the deliveries row the caller already committed for this call (the order's
        fan-out does); the attempts are recorded on it.  None: the order caller makes its own.

        Returns Deferred[str] with the call's outcome: answered / busy / no_answer / failed /
        unknown / cancelled.  The keypad answer itself reaches IKeypadSink.
        """

    def stage_tx(conn, now, *, order_id: int, team_id: int, member_id: int | None, phone: str, purpose: str,
                 delivery_id: int | None = None, step_id: int | None = None):
        """Inside the caller's transaction: the call's first attempt, due now."""

    def place_due():
        """After the caller's COMMIT: place what is due (the caller also looks by itself)."""
