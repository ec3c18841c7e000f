"""SMS through a bank of GSM modems (3GPP TS 27.005 / 23.040).

Modules, one job each:
- encoding: text → SMS-SUBMIT PDUs (GSM-7/UCS-2, 160/153 and 70/67, 8/16-bit references, non-BMP)
- pdu: PDUs read from modems → SMS-DELIVER / SMS-STATUS-REPORT, or a reason they are refused
- atparse: CSQ (dBm), CREG, CNMI and CPMS ranges and choices, CMGR/CMGL/CMTI headers
- at: the AT session protocol (one command in flight, unsolicited lines anywhere, "> " prompt)
- modem: one modem's driver (open/reopen, init, health probe, bench, reading the SIM)
- policy: pure scheduling and retry rules
- store: the outbox and inbound records (SQL with group commit; memory for trials)
- inbound: store raw, reassemble, route status reports, hand replies to the feedback engine
- bank: the modem bank and persistent outbox (ISmsOutbox), observers of message outcomes
- config: SmsConfig, the [sms] section
- emulator: emulated modems on ptys (or in-process), `python -m sms.emulator --modems 4`
"""
