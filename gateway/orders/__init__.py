"""Orders: created by dispatchers, sent to teams' commanders and deputies."""
