"""Escalation on silence: ladders of reminders, calls and the duty supervisor's alert."""
