"""The secrets the test suite uses: distinctive values, so that the suite-wide check
(tests/conftest.py, `no_secret_in_logs`) can find any of them in a log line, an error message
or an event.  Every test that needs a PIN, an AMI secret, a webhook key or an API key takes it
from here; a new kind of secret gets a line here."""

SIM_PIN = "7319"              # the SIM's real PIN in tests
WRONG_SIM_PIN = "8642"        # a wrong one the configuration gives
AMI_SECRET = "ami-Secret-5b1f0e"
WEBHOOK_SECRET = "whk-Secret-9c2d7a"

ALL = (SIM_PIN, WRONG_SIM_PIN, AMI_SECRET, WEBHOOK_SECRET)
