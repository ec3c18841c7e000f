"""Wiring: which parts the gateway runs, given its configuration.

Kept apart from the parts themselves so that each part can be built and tested alone.
"""
from __future__ import annotations

from twisted.logger import Logger

from gateway.config import Config
from gateway.service import Gateway, build_gateway

log = Logger()


def build_service(config: Config, reactor) -> Gateway:
    gateway = build_gateway(config, reactor)
    return gateway
