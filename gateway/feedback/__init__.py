"""Feedback: answers from teams (SMS and keypad) merged into one per-team state."""
