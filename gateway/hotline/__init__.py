"""The merged 110/119/122 hotline intake: call tracking from AMI events, records, figures.

Plain functions for the API and the CLI (each takes a Connection in a transaction):
``mark_call(conn, call_id, valid, category, by)``, ``line_figures(conn, day, tz)``,
``callback_list(conn)``, ``mark_callback(conn, call_id, by)``, ``list_calls(conn, ...)``.
"""
from gateway.hotline.store import (callback_list, get_call, line_figures, list_calls, mark_call,
                                   mark_callback)
from gateway.hotline.tracker import HotlineCall, HotlineTracker

__all__ = ["HotlineTracker", "HotlineCall", "mark_call", "line_figures", "callback_list",
           "mark_callback", "list_calls", "get_call"]
