"""The database schema (SQLAlchemy Core).  Alembic migrations in migrations/ create it.

Times are stored as timezone-aware UTC.  Every raw inbound message and keypress is kept in
`inbound_raw` whatever became of it; `audit_log` is append-only.
"""
from datetime import timezone

from sqlalchemy import (JSON, BigInteger, Boolean, CheckConstraint, Column, DateTime, Float,
                        ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table, Text,
                        TypeDecorator, UniqueConstraint, false, text)

# Stable constraint names so that migrations work the same on SQLite and PostgreSQL.
metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in and out, on every backend.

    SQLite keeps no offset, so without this a value would come back naive; a naive value
    given to the database is taken to be UTC already.
    """
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


TS = UTCDateTime()
# BigInteger ids on PostgreSQL, but INTEGER on SQLite so that it stays the rowid alias.
ID = BigInteger().with_variant(Integer(), "sqlite")

# --- directory ------------------------------------------------------------------------------

teams = Table(
    "teams", metadata,
    Column("id", ID, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),     # e.g. PUB-01, PRO-04, EXPERT
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),                  # public / professional / expert
    Column("township", String(100)),                             # for township/street sub-teams
    Column("township_class", Integer),                           # 1-3 where it applies
    Column("min_size", Integer),
    Column("active", Boolean, nullable=False, default=True),     # false: no longer in the roster
    Column("created_at", TS, nullable=False),
    CheckConstraint("kind in ('public','professional','expert')", name="kind"),
    CheckConstraint("township_class is null or township_class between 1 and 3", name="township_class"),
)

members = Table(
    "members", metadata,
    Column("id", ID, primary_key=True),
    Column("team_id", ID, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),        # commander / deputy / member / expert / liaison
    Column("specialty", String(200)),
    Column("category", String(100)),                   # expert category
    Column("active", Boolean, nullable=False, default=True),   # false: left the roster (kept for history)
    Column("pin_hash", String(200)),                   # the feedback line's optional PIN, hashed (gateway/directory/pins.py)
    CheckConstraint("role in ('commander','deputy','member','expert','liaison')", name="role"),
)

member_phones = Table(
    "member_phones", metadata,
    Column("id", ID, primary_key=True),
    Column("member_id", ID, ForeignKey("members.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("e164", String(20), nullable=False, unique=True),
    Column("rank", Integer, nullable=False, default=0),          # 0 = first number to use
)

duty_roster = Table(
    "duty_roster", metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("e164", String(20), nullable=False),
    Column("starts_at", TS, nullable=False),
    Column("ends_at", TS, nullable=False),
    Index("ix_duty_roster_window", "starts_at", "ends_at"),
)

# --- hotlines ---------------------------------------------------------------------------------

hotline_calls = Table(
    "hotline_calls", metadata,
    Column("id", ID, primary_key=True),
    Column("call_id", String(64), nullable=False, unique=True),  # Asterisk Linkedid of the caller's channel
    Column("line", String(8), nullable=False),                   # 110 / 119 / 122
    Column("caller", String(40)),
    Column("channel", String(200)),
    Column("arrived_at", TS, nullable=False),
    Column("ivr_at", TS),
    Column("queue_joined_at", TS),
    Column("queue", String(80)),
    Column("answered_at", TS),
    Column("call_taker", String(200)),
    Column("hold_seconds", Float),
    Column("ended_at", TS),
    Column("hangup_cause", Integer),
    Column("hangup_text", String(80)),
    Column("outcome", String(24)),    # answered / abandoned_ivr / abandoned_queue / failed / (null while live)
    Column("valid", Boolean),
    Column("category", String(80)),
    Column("marked_by", String(100)),
    Column("callback_state", String(16)),    # pending / done, for abandoned calls
    Column("updated_at", TS, nullable=False),
    Column("uniqueid", String(64)),           # Uniqueid of the caller's channel (joins FastAGI)
    Column("note", String(200)),              # e.g. closed by resync: times approximate
    Column("callback_at", TS),
    Column("callback_by", String(100)),
    Column("caller_flag", String(32)),        # repeat / often_invalid when the call came (caller history)
    Index("ix_hotline_calls_line_arrived", "line", "arrived_at"),
    Index("ix_hotline_calls_callback_state", "callback_state"),
    Index("ix_hotline_calls_caller_arrived", "caller", "arrived_at"),   # a caller's history
)

# Numbers dispatchers marked as nuisance callers.  Never used to block a call: only what the
# call-takers see changes (and, optionally, a recorded notice while the caller waits).
hotline_nuisance = Table(
    "hotline_nuisance", metadata,
    Column("id", ID, primary_key=True),
    Column("number", String(40), nullable=False, index=True),
    Column("reason", String(200), nullable=False),
    Column("notice", Boolean, nullable=False, default=False),   # play the recorded notice while waiting
    Column("added_at", TS, nullable=False),
    Column("added_by", String(100), nullable=False),
    Column("expires_at", TS),                                   # null: until removed
    Column("removed_at", TS),
    Column("removed_by", String(100)),
)

# --- orders -----------------------------------------------------------------------------------

orders = Table(
    "orders", metadata,
    Column("id", ID, primary_key=True),
    Column("code", String(8), nullable=False, index=True),        # short code people type, e.g. 0427
    Column("incident_ref", String(100), nullable=False),
    Column("kind", String(24), nullable=False),                   # stability / rescue / ordinary
    Column("onscene_commander", String(200)),
    Column("text", Text, nullable=False),
    Column("rule", String(24), nullable=False),                   # same_township / leaving_city
    Column("voice", Boolean, nullable=False, default=False),
    Column("drill", Boolean, nullable=False, default=False, server_default=false()),  # 【演练】, counted apart
    Column("state", String(16), nullable=False, default="open"),  # open / closed / cancelled
    Column("created_at", TS, nullable=False),
    Column("created_by", String(100)),
    Column("closed_at", TS),
    Column("idempotency_key", String(100), unique=True),
    Column("major", Boolean, nullable=False, default=False, server_default="0"),  # 重大突出事件: situation reports, leaders
    # A code names one open order, whichever node or CLI chose it (gateway/orders/codes.py retries on conflict).
    Index("uq_orders_open_code", "code", unique=True, postgresql_where=text("state = 'open'"),
          sqlite_where=text("state = 'open'")),
)

order_teams = Table(
    "order_teams", metadata,
    Column("id", ID, primary_key=True),
    Column("order_id", ID, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("team_id", ID, ForeignKey("teams.id"), nullable=False, index=True),
    Column("state", String(16), nullable=False),   # sent delivered received assembled arrived finished unreachable declined
    Column("state_at", TS, nullable=False),
    Column("sent_at", TS),
    Column("delivered_at", TS),
    Column("received_at", TS),
    Column("assembled_at", TS),
    Column("arrived_at", TS),
    Column("finished_at", TS),
    Column("answered_by", ID, ForeignKey("members.id")),
    Column("reason", Text),
    Column("report", Text),
    Column("form_complete", Boolean, nullable=False, default=False, server_default="0"),  # the formal feedback form
    UniqueConstraint("order_id", "team_id", name="uq_order_teams_order_team"),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", ID, primary_key=True),
    Column("order_id", ID, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("team_id", ID, ForeignKey("teams.id"), nullable=False),
    Column("member_id", ID, ForeignKey("members.id")),
    Column("phone", String(20), nullable=False),
    Column("channel", String(8), nullable=False),     # sms / voice
    Column("state", String(16), nullable=False),      # queued sent delivered failed answered no_answer busy
                                                      # (+ requested/handing: an order call not yet handed on)
    Column("attempts", Integer, nullable=False, default=0),
    Column("detail", Text),
    Column("handed_at", TS),                          # given to the SMS outbox (still queued until a modem took it)
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("owner_node", String(64)),                  # the node that claimed it (issue 13); null: free
    Index("ix_deliveries_state", "state"),           # the fan-out's sweep for rows not yet handed on
    Index("ix_deliveries_owner_node", "owner_node"),
)

# An order call's attempts, one row each (the call's outbox): committed `due` with the state change
# that asks for the call, `placing` (with the channel id the gateway chose) before the Originate
# goes out, then `ringing` and the outcome.  A restart resumes from these rows alone.
call_attempts = Table(
    "call_attempts", metadata,
    Column("id", ID, primary_key=True),
    Column("order_id", ID, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("team_id", ID, ForeignKey("teams.id"), nullable=False),
    Column("member_id", ID, ForeignKey("members.id")),
    Column("delivery_id", ID, ForeignKey("deliveries.id")),          # the order's voice delivery
    Column("step_id", ID, ForeignKey("escalation_steps.id")),        # the escalation step that asked
    Column("purpose", String(16), nullable=False),    # order / escalation / supervisor
    Column("phone", String(20), nullable=False),
    Column("attempt", Integer, nullable=False),       # 1-based within its chain
    Column("state", String(16), nullable=False),      # due placing ringing answered busy no_answer failed
                                                      # unknown cancelled
    Column("due_at", TS, nullable=False),
    Column("channel_id", String(80), unique=True),    # Originate ChannelId, chosen before placing
    Column("placed_at", TS),
    Column("ended_at", TS),
    Column("detail", Text),
    Column("updated_at", TS, nullable=False),
    Column("owner_node", String(64)),                  # the node that claimed it (issue 13); null: free
    Index("ix_call_attempts_state_due", "state", "due_at"),
    Index("ix_call_attempts_owner_node", "owner_node"),
)

# --- SMS --------------------------------------------------------------------------------------

sms_messages = Table(
    "sms_messages", metadata,
    Column("id", ID, primary_key=True),
    Column("phone", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("purpose", String(24), nullable=False),    # order / reminder / confirmation / supervisor / ...
    Column("order_id", ID, ForeignKey("orders.id")),
    Column("delivery_id", ID, ForeignKey("deliveries.id")),
    Column("encoding", String(8)),                     # gsm7 / ucs2
    Column("concat_ref", Integer),
    Column("parts", Integer),
    Column("modem", String(100)),                      # all parts go out on one modem
    Column("state", String(16), nullable=False),       # queued sending sent delivered failed unknown
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("owner_node", String(64)),                  # the node that claimed it (issue 13); null: free
    Index("ix_sms_messages_state", "state"),
    Index("ix_sms_messages_owner_node", "owner_node"),
)

sms_segments = Table(
    "sms_segments", metadata,
    Column("id", ID, primary_key=True),
    Column("message_id", ID, ForeignKey("sms_messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),            # 1-based part number
    Column("pdu", Text, nullable=False),               # hex, SMSC octet included
    Column("tpdu_length", Integer, nullable=False),
    Column("state", String(16), nullable=False),       # queued submitting sent delivered failed unknown
    Column("modem", String(100)),
    Column("mr", Integer),                             # +CMGS message reference
    Column("attempts", Integer, nullable=False, default=0),
    Column("outcome_unknown", Integer, nullable=False, default=0),   # times its fate was unknown
    Column("last_error", String(200)),
    Column("submitted_at", TS),
    Column("reported_at", TS),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("message_id", "seq", name="uq_sms_segments_message_seq"),
    Index("ix_sms_segments_state", "state"),
)

# --- inbound, feedback, escalation ------------------------------------------------------------

inbound_raw = Table(
    "inbound_raw", metadata,
    Column("id", ID, primary_key=True),
    Column("channel", String(16), nullable=False),    # sms / sms_part / status_report / keypad / ami / agi
    Column("source", String(200)),                    # modem port, call id, ...
    Column("sender", String(40)),
    Column("raw", LargeBinary),                       # bytes exactly as received
    Column("raw_sha256", String(64)),                 # of raw: the duplicate check's index (SIM re-read)
    Column("text", Text),                             # decoded text where it could be decoded
    Column("received_at", TS, nullable=False),
    Column("state", String(16), nullable=False),      # new / parsed / refused / garbage / part
    Column("note", Text),
    Column("meta", JSON),
    Index("ix_inbound_raw_state", "state"),
    Index("ix_inbound_raw_raw_sha256", "raw_sha256"),
)

feedback = Table(
    "feedback", metadata,
    Column("id", ID, primary_key=True),
    Column("order_team_id", ID, ForeignKey("order_teams.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("member_id", ID, ForeignKey("members.id")),
    Column("phone", String(40)),
    Column("channel", String(8), nullable=False),     # sms / keypad / api
    Column("status", String(16), nullable=False),
    Column("report", Text),
    Column("raw_id", ID, ForeignKey("inbound_raw.id")),
    Column("recorded_at", TS, nullable=False),
)

escalation_steps = Table(
    "escalation_steps", metadata,
    Column("id", ID, primary_key=True),
    Column("order_team_id", ID, ForeignKey("order_teams.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("stage", String(16), nullable=False),      # receipt / assembly / arrival / finish / report
    Column("step", Integer, nullable=False),
    Column("action", String(32), nullable=False),     # sms_again / call_commander / call_deputy / supervisor
    Column("due_at", TS, nullable=False),
    Column("state", String(16), nullable=False),      # pending / fired / cancelled
    Column("fired_at", TS),
    Column("late", Boolean, nullable=False, default=False),
    Column("reason", Text),
    Column("outcome", String(16)),                    # of a call step: answered / busy / no_answer / failed
    Column("owner_node", String(64)),                  # the node that claimed it (issue 13); null: free
    Index("ix_escalation_steps_pending", "state", "due_at"),
    Index("ix_escalation_steps_owner_node", "owner_node"),
    # A team's next pending step (after every answer): without it SQLite walks the pending index.
    Index("ix_escalation_steps_team_pending", "order_team_id", "state", "due_at"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", ID, primary_key=True),
    Column("at", TS, nullable=False),
    Column("actor", String(100), nullable=False),     # cli:<user>, api:<client>, sms:<phone>, system
    Column("action", String(64), nullable=False),
    Column("subject", String(200)),
    Column("detail", JSON),
)

# The hotline's alerts to the duty supervisor (gateway/hotline/alerts.py): callers waiting past
# the overflow threshold, or no call-taker logged in.  One row per episode, from raised to cleared.
hotline_alerts = Table(
    "hotline_alerts", metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),            # overflow / no_calltaker
    Column("line", String(8)),                             # of the call that raised it
    Column("call_id", String(64)),                         # its Asterisk Linkedid
    Column("state", String(16), nullable=False),           # raised / notified / cleared
    Column("raised_at", TS, nullable=False),
    Column("notify_at", TS, nullable=False),               # when the supervisor is told if still on
    Column("notified_at", TS),
    Column("cleared_at", TS),
    Column("supervisor", String(100)),
    Column("supervisor_phone", String(20)),
    Column("sms_message_id", ID),
    Column("detail", Text),
    Index("ix_hotline_alerts_state", "state", "notify_at"),
)

# One row per order-call token the order flow accepted (ivr/tokens.py): committed before the
# call goes on, so the same token is refused the second time, also after a restart.
call_tokens_used = Table(
    "call_tokens_used", metadata,
    Column("id", ID, primary_key=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("delivery_id", ID),                        # as the token says (not a foreign key: kept whatever happens to the row)
    Column("phone", String(40)),
    Column("expires_at", TS, nullable=False),
    Column("used_at", TS, nullable=False),
    Column("call_id", String(200)),                   # the AGI session that used it
)

# --- CAP alerts and proposals -----------------------------------------------------------------

# Every CAP document received, raw, whatever became of it (accepted, refused, duplicate).
cap_alerts = Table(
    "cap_alerts", metadata,
    Column("id", ID, primary_key=True),
    Column("received_at", TS, nullable=False),
    Column("source", String(200), nullable=False),     # api:<client> / inbox:<file name>
    Column("raw", LargeBinary, nullable=False),        # bytes exactly as received
    Column("state", String(16), nullable=False),       # accepted / refused / duplicate
    Column("element", String(200)),                    # refused: the element at fault
    Column("reason", Text),                            # refused: what is wrong
    Column("alert_key", String(400)),                  # sender,identifier,sent
    Column("accepted_key", String(400), unique=True),  # alert_key of the one accepted copy
    Column("msg_type", String(16)),
    Column("status", String(16)),
    Column("references", Text),
    Column("signature", String(16)),                   # verified / unchecked / none
    Column("action", String(24)),                      # order_created / proposal / order_updated / ...
    Column("rule", String(100)),                       # the rule table entry that matched
    Column("headline", Text),
    Column("text_full", Text),                         # headline, description, instruction in full
    Column("order_id", ID, ForeignKey("orders.id")),
    Column("proposal_id", ID),
    Index("ix_cap_alerts_alert_key", "alert_key"),
)

# An order waiting for a person: a CAP rule with confirm = true makes one.
order_proposals = Table(
    "order_proposals", metadata,
    Column("id", ID, primary_key=True),
    Column("created_at", TS, nullable=False),
    Column("source", String(16), nullable=False),      # cap
    Column("cap_alert_id", ID, ForeignKey("cap_alerts.id")),
    Column("state", String(16), nullable=False),       # pending / confirmed / cancelled
    Column("request", JSON, nullable=False),           # the order it becomes (incident_ref, kind, text, target, rule, voice)
    Column("text_full", Text),
    Column("rule", String(100)),
    Column("decided_at", TS),
    Column("decided_by", String(100)),
    Column("order_id", ID, ForeignKey("orders.id")),
    Index("ix_order_proposals_state", "state"),
)

# --- HTTP trust: API keys and idempotency -----------------------------------------------------

api_keys = Table(
    "api_keys", metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),     # the author orders and audit rows record
    Column("key_id", String(16), nullable=False, unique=True),   # the public part of the key, to find the row
    Column("key_hash", String(64), nullable=False),              # SHA-256 of the whole key; the key is never stored
    Column("scope", String(16), nullable=False),                 # read / dispatch / admin
    Column("created_at", TS, nullable=False),
    Column("created_by", String(100)),
    Column("last_used_at", TS),
    Column("revoked_at", TS),
    CheckConstraint("scope in ('read','dispatch','admin')", name="scope"),
)

api_idempotency = Table(
    "api_idempotency", metadata,
    Column("id", ID, primary_key=True),
    Column("key_name", String(64), nullable=False),              # scoped to the API key that sent it
    Column("idem_key", String(100), nullable=False),             # the client's Idempotency-Key
    Column("request_hash", String(64), nullable=False),          # SHA-256 of method, path and body
    Column("order_id", ID, ForeignKey("orders.id", ondelete="CASCADE")),
    Column("created_at", TS, nullable=False),                    # kept 24 h
    UniqueConstraint("key_name", "idem_key", name="uq_api_idempotency_key"),
    Index("ix_api_idempotency_created_at", "created_at"),
)


# --- major incidents, leaders, the formal feedback form (issue 16) ---------------------------

# The command structure the center informs (总指挥, 副总指挥, 办公室主任, 县领导): not a team.
leaders = Table(
    "leaders", metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),    # matched by name on re-import
    Column("role", String(24), nullable=False),
    Column("title", String(200)),                                # e.g. 县委书记, 分管副县长
    Column("e164", String(20)),                                  # null once inactive (phone released)
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", TS, nullable=False),
    CheckConstraint("role in ('commander_in_chief','deputy_commander','office_director','county_leader')",
                    name="role"),
)

# A team's situation report (现场动态) on a major order: an SMS text or a recorded spoken report.
situation_reports = Table(
    "situation_reports", metadata,
    Column("id", ID, primary_key=True),
    Column("order_id", ID, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("order_team_id", ID, ForeignKey("order_teams.id", ondelete="CASCADE"), nullable=False),
    Column("member_id", ID, ForeignKey("members.id")),
    Column("phone", String(40)),
    Column("channel", String(8), nullable=False),     # sms / keypad
    Column("text", Text),
    Column("audio_path", String(500)),                # the recording, for keypad 5
    Column("audio_seconds", Float),
    Column("raw_id", ID, ForeignKey("inbound_raw.id")),
    Column("recorded_at", TS, nullable=False),
)

# Every SMS to a leader: written in the transaction of what it reports, sent by the notifier.
leader_notifications = Table(
    "leader_notifications", metadata,
    Column("id", ID, primary_key=True),
    Column("order_id", ID, ForeignKey("orders.id", ondelete="CASCADE"), index=True),   # null: the daily digest
    Column("leader_id", ID, ForeignKey("leaders.id"), nullable=False),
    Column("phone", String(20), nullable=False),
    Column("kind", String(24), nullable=False),       # created first_arrived all_arrived missed finished digest daily
    Column("dedupe", String(100), nullable=False),    # the same news never twice to the same leader
    Column("text", Text, nullable=False),
    Column("state", String(16), nullable=False),      # queued / handed / failed
    Column("created_at", TS, nullable=False),
    Column("handed_at", TS),
    UniqueConstraint("leader_id", "dedupe", name="uq_leader_notifications_leader_dedupe"),
    Index("ix_leader_notifications_state", "state"),
)

# A leader's reply about an order: a note, never a team's state.
order_notes = Table(
    "order_notes", metadata,
    Column("id", ID, primary_key=True),
    Column("order_id", ID, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("leader_id", ID, ForeignKey("leaders.id")),
    Column("author", String(100), nullable=False),
    Column("phone", String(40)),
    Column("text", Text, nullable=False),
    Column("raw_id", ID, ForeignKey("inbound_raw.id")),
    Column("at", TS, nullable=False),
)

# The formal feedback form (正式反馈单) of one team on one order, filled after "finished".
feedback_forms = Table(
    "feedback_forms", metadata,
    Column("id", ID, primary_key=True),
    Column("order_team_id", ID, ForeignKey("order_teams.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("result", Text),                           # 处置结果
    Column("follow_up", Boolean),                     # 需后续处置
    Column("responsible_person", String(100)),        # 责任人
    Column("responsible_unit", String(200)),          # 责任单位
    Column("casualties", Text),                       # 伤亡/损失
    Column("remarks", Text),                          # 备注
    Column("asked_field", String(24)),                # the field the last SMS asked for
    Column("complete", Boolean, nullable=False, default=False),
    Column("completed_at", TS),
    Column("updated_at", TS, nullable=False),
    Column("updated_by", String(100)),                # sms:<phone> / api:<key name>
)


# --- the event log and its webhook subscribers (gateway/eventlog.py, adapters/webhooks.py) ---------

event_log = Table(
    "event_log", metadata,
    # PostgreSQL: a sequence; SQLite: AUTOINCREMENT, so an id is never reused after a sweep.
    Column("id", ID, primary_key=True),
    Column("kind", String(64), nullable=False),         # hotline.arrived, order.feedback, ...
    Column("at", TS, nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_event_log_at", "at"),                     # the retention sweep
    sqlite_autoincrement=True,
)

webhook_subscribers = Table(
    "webhook_subscribers", metadata,
    Column("id", ID, primary_key=True),
    Column("url", String(500), nullable=False, unique=True),
    Column("secret", Text),                             # own HMAC key; null: webhooks.secret
    Column("source", String(8), nullable=False),        # config / cli
    Column("cursor", BigInteger, nullable=False),       # the last event id delivered (acknowledged)
    Column("created_at", TS, nullable=False),
    Column("delivered_at", TS),
    Column("failing_since", TS),                        # first failed POST of the event at the head
    Column("last_error", String(200)),
    Column("owner_node", String(64)),                   # the node delivering to it (its cursor's writer)
    CheckConstraint("source in ('config','cli')", name="source"),
)

webhook_dead_letters = Table(
    "webhook_dead_letters", metadata,
    Column("id", ID, primary_key=True),
    Column("subscriber_id", ID, ForeignKey("webhook_subscribers.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("event_id", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("at", TS, nullable=False),                   # when it was given up
    Column("error", String(200)),
)

# --- several gateways on one database (gateway/cluster/) ----------------------------------------

nodes = Table(
    "nodes", metadata,
    # One row per gateway node (gateway.node_name).  A node whose heartbeat is older than
    # cluster.node_timeout_s, or which stopped cleanly, is dead: rows it owned return to the pool.
    Column("name", String(64), primary_key=True),
    Column("host", String(255), nullable=False),        # the machine (modems and AMI links belong to it)
    Column("pid", Integer, nullable=False),
    Column("started_at", TS, nullable=False),
    Column("heartbeat_at", TS, nullable=False),
    Column("stopped_at", TS),                           # set on a clean stop; null while running
    Column("modems", Integer, nullable=False, server_default="0"),   # usable modems at the last heartbeat
)

leases = Table(
    "leases", metadata,
    # Singletons (the AMI event consumer per Asterisk, the auditor, the retention sweep): held by
    # one live node at a time, until `until`; taken over once it has passed.
    Column("name", String(100), primary_key=True),
    Column("holder", String(64)),
    Column("until", TS),
    Column("changed_at", TS),
    Column("generation", BigInteger, nullable=False, server_default="0"),   # +1 each time the holder changes
)
