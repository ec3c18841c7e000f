"""A FastAGI client playing Asterisk's side, faithful to the Asterisk 22 transcripts.

Drill mode and tests use it to call the gateway's FastAGI server without a PBX:

    record = await place_call(reactor, "127.0.0.1", 4573, "order?order=0427",
                              caller=ScriptedCaller([Press("1")]), variables={"ORDER_CODE": "0427"})
    record.commands      # what the gateway said, line by line
    record.played        # the prompts the caller heard

    result = await replay_transcript(reactor, "127.0.0.1", 4573, "order-call-press1.agi.jsonl")
"""
from ivr.emulator.caller import HangUp, Press, ScriptedCaller, Silence, Speak  # noqa: F401
from ivr.emulator.channel import EmulatedChannel  # noqa: F401
from ivr.emulator.client import CallRecord, place_call  # noqa: F401
from ivr.emulator.environment import agi_environment  # noqa: F401
from ivr.emulator.transcript import ReplayResult, Transcript, replay_transcript  # noqa: F401
