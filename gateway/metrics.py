"""Every Prometheus metric Yihu exposes, in one place so that names stay consistent.

Parts fill them; `/metrics` renders the default registry.  Labels name the thing involved
(modem port, line, team) and never carry secrets.
"""
from prometheus_client import Counter, Gauge, Histogram, Info

from gateway import __version__

BUILD_INFO = Info("yihu_build", "Build information of the Yihu gateway")
BUILD_INFO.info({"version": __version__})

# --- storage -------------------------------------------------------------------------------
DB_QUERY_SECONDS = Histogram("yihu_db_query_seconds", "Time of one database unit of work",
                             buckets=(.001, .005, .01, .05, .1, .5, 1, 5))
DB_ERRORS = Counter("yihu_db_errors_total", "Database units of work that raised")
DB_WRITE_RETRIES = Counter("yihu_db_write_retries_total",
                           "State writes that failed on a database fault and were tried again", ["part"])
DB_WRITES_OVERDUE = Gauge("yihu_db_writes_overdue",
                          "State writes still not committed past their deadline (alarm while > 0)", ["part"])
DB_DEADLINES = Counter("yihu_db_deadlines_total", "Database units of work that passed a deadline "
                       "(statement: ran too long; pool: waited too long for a thread or connection)", ["kind"])

# --- SMS modem bank ---------------------------------------------------------------------------
SMS_SEGMENTS_SENT = Counter("yihu_sms_segments_sent_total", "SMS segments accepted by a modem (+CMGS)", ["modem"])
SMS_SEGMENTS_FAILED = Counter("yihu_sms_segments_failed_total", "SMS segments refused or lost", ["modem", "reason"])
SMS_QUEUE_DEPTH = Gauge("yihu_sms_queue_depth", "Segments waiting in the outbox")
SMS_MODEM_QUEUE = Gauge("yihu_sms_modem_queue_depth", "Segments assigned to a modem, not yet settled", ["modem"])
SMS_MODEM_SIGNAL_DBM = Gauge("yihu_sms_modem_signal_dbm", "Modem signal strength (from +CSQ)", ["modem"])
SMS_MODEM_STATE = Gauge("yihu_sms_modem_state", "1 for the modem's current state", ["modem", "state"])
SMS_INBOUND = Counter("yihu_sms_inbound_total", "SMS received and committed", ["modem"])
MODEM_UNSOLICITED = Counter("yihu_modem_unsolicited_total",
                            "Unsolicited result codes from the modems, by prefix (CMTI, CTZV, QUSIM, NWTIME, ...; "
                            "'other' when it has none or too many kinds were seen)", ["kind"])

# --- AMI and hotlines -------------------------------------------------------------------------
AMI_CONNECTED = Gauge("yihu_ami_connected", "1 while the AMI link is logged in")
AMI_EVENTS = Counter("yihu_ami_events_total", "AMI events received")
AMI_RECONNECTS = Counter("yihu_ami_reconnects_total", "AMI reconnections")
AMI_GARBAGE = Counter("yihu_ami_garbage_total", "AMI input that could not be parsed")
HOTLINE_CALLS = Counter("yihu_hotline_calls_total", "Hotline calls by outcome", ["line", "outcome"])
HOTLINE_ACTIVE = Gauge("yihu_hotline_calls_active", "Hotline calls in progress", ["line"])
HOTLINE_ANSWER_SECONDS = Histogram("yihu_hotline_answer_seconds", "Arrival to answer", ["line"],
                                   buckets=(5, 10, 15, 20, 30, 45, 60, 90, 120, 300))

# --- IVR -------------------------------------------------------------------------------------
AGI_SESSIONS = Counter("yihu_agi_sessions_total", "FastAGI sessions by script", ["script"])
AGI_ACTIVE = Gauge("yihu_agi_sessions_active", "FastAGI sessions in progress")
AGI_ERRORS = Counter("yihu_agi_errors_total", "FastAGI sessions that ended in error", ["script"])
AGI_PROMPTS_UNPLAYABLE = Counter("yihu_agi_prompts_unplayable_total",
                                 "Prompts Asterisk could not play (result=-1 on a live channel: "
                                 "file missing or unreadable)", ["script", "prompt"])
ORDER_CALLS = Counter("yihu_order_calls_total", "Voice order calls by outcome", ["outcome"])

# --- orders, feedback, escalation -------------------------------------------------------------
ORDERS_CREATED = Counter("yihu_orders_created_total", "Orders created (drill: an assembly drill, kept apart)",
                         ["drill"])
FEEDBACK_RECORDED = Counter("yihu_feedback_total", "Feedback recorded", ["status", "channel", "drill"])
FEEDBACK_REFUSED = Counter("yihu_feedback_refused_total", "Replies refused", ["reason"])
ESCALATION_STEPS = Counter("yihu_escalation_steps_total", "Escalation steps fired", ["stage", "action", "drill"])
ESCALATION_PENDING = Gauge("yihu_escalation_pending", "Escalation steps waiting")
ESCALATION_LATENESS = Histogram("yihu_escalation_lateness_seconds", "How late an escalation step fired",
                                buckets=(.01, .05, .1, .2, .5, 1, 5, 60))

# --- trust boundaries --------------------------------------------------------------------------
AUTH_REFUSED = Counter("yihu_auth_refused_total", "Refused requests by reason (API key, FastAGI peer, "
                       "order-call token, feedback-line PIN)", ["reason"])

# --- CAP intake and caller history -----------------------------------------------------------------
CAP_DOCUMENTS = Counter("yihu_cap_documents_total", "CAP documents taken in, by what became of them",
                        ["state", "action"])
CALLER_HISTORY_FAILED = Counter("yihu_caller_history_failures_total",
                                "Hotline calls whose caller-history lookup failed (the call went on without it)")

# --- the event log and webhooks ------------------------------------------------------------------
EVENTS_HEAD = Gauge("yihu_events_head", "The last event id handed to the event stream and webhooks")
EVENTS_HELD_SECONDS = Gauge("yihu_events_held_seconds",
                            "How long the log's next event has waited for an older open transaction")
EVENTS_SWEPT = Counter("yihu_events_swept_total", "Events deleted by the retention sweep")
WEBHOOK_SENT = Counter("yihu_webhook_sent_total", "Events delivered to a webhook", ["target"])
WEBHOOK_FAILED = Counter("yihu_webhook_failures_total", "Failed webhook POSTs (retried)", ["target"])
WEBHOOK_BACKLOG = Gauge("yihu_webhook_backlog", "Events in the log not yet delivered to a webhook", ["target"])
WEBHOOK_DEAD_LETTERS = Counter("yihu_webhook_dead_letters_total",
                               "Events given up for a webhook after webhooks.dead_letter_after_s", ["target"])

# --- cluster (several nodes on one PostgreSQL) -----------------------------------------------------
NODE_HEARTBEAT_AGE = Gauge("yihu_node_heartbeat_age_seconds",
                           "Age of each node's last heartbeat, as this node saw it at its own heartbeat", ["node"])
NODES_ALIVE = Gauge("yihu_nodes_alive", "Nodes alive (heartbeat younger than cluster.node_timeout_s, not stopped)")
LEASE_HELD = Gauge("yihu_lease_held", "1 while this node holds the singleton's lease", ["lease"])
LEASE_CHANGES = Counter("yihu_lease_changes_total", "Times this node took or lost the singleton's lease", ["lease"])
WAKEUP_LISTENER_UP = Gauge("yihu_wakeup_listener_up", "1 while the LISTEN connection for work wake-ups is up")

# --- several nodes on one database (issue 13) ------------------------------------------------------
WORK_TAKEN_OVER = Counter("yihu_work_taken_over_total",
                          "Work rows this node took from a dead node (kind: sms_segment, delivery, call_attempt, "
                          "escalation_step, webhook_cursor)", ["kind"])
OUTBOX_OLDEST = Gauge("yihu_outbox_oldest_seconds",
                      "Age of the oldest row due but not yet done, database-wide (kind: sms_segment, delivery, "
                      "call_attempt, escalation_step)", ["kind"])
