"""Typed keys for what the aiohttp application carries: config, database, clock, URLs."""

from __future__ import annotations

import jinja2
from aiohttp import web

from server.clock import Clock
from server.config import Config
from server.federating import Federation
from server.storage.engine import Database
from server.urls import Urls

CONFIG = web.AppKey("config", Config)
DATABASE = web.AppKey("database", Database)
CLOCK = web.AppKey("clock", Clock)
URLS = web.AppKey("urls", Urls)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
FEDERATION = web.AppKey("federation", Federation)
