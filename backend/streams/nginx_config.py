"""Render the nginx-rtmp configuration from `backend/streams/nginx-rtmp.conf`, and check any config for the
settings that quietly break stream authentication (public stat/control, GET notify, several workers, https
callbacks, access logs that record keys)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from backend.errors import InvalidInput
from backend.streams.keys import valid_name
from backend.streams.pepper import valid_callback_token

TEMPLATE = Path(__file__).with_name("nginx-rtmp.conf")  # package data: installed with the code
MODULE_PATH = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
TOKEN_PARAM = "token"  # the callback URLs' query argument that carries the callback token
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# Checked with `fullmatch`: `match` with `^…$` lets a trailing "\n" into the config.
_DURATION = re.compile(r"\d+(ms|s|m|h)?")
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class RenderOptions:
    prefix: Path
    callback_token: str = field(repr=False)  # `pepper.callback_token(settings)`: the API refuses callbacks without it
    callback_url: str = "http://127.0.0.1:8080"
    rtmp_listen: str = "1935"
    http_listen: str = "127.0.0.1:8088"
    app: str = "live"
    update_timeout: str = "30s"
    drop_idle_publisher: str = "10s"
    play_control: bool = False
    stat_allow: tuple[str, ...] = ("127.0.0.1",)
    error_log: str | None = None  # default PREFIX/error.log; `stderr` in containers
    # `daemon off;` in the file, for nginx run as a child process; without it, choose with `-g "daemon off;"`
    # (containers) or let a service manager decide (Debian's unit passes `-g 'daemon on;'`, which a directive
    # in the file would clash with).
    foreground: bool = True
    module_path: str = MODULE_PATH


def render(options: RenderOptions, template: Path = TEMPLATE) -> str:
    """The config text for `nginx -p PREFIX -c FILE`; invalid options raise `InvalidInput`."""
    url = urlsplit(options.callback_url)
    if url.scheme != "http" or not url.hostname:
        raise InvalidInput(f"invalid callback URL {options.callback_url!r}: nginx-rtmp calls plain http:// URLs only")
    if not valid_name(options.app):
        raise InvalidInput(f"invalid application {options.app!r}: use letters, digits, '_' or '-'")
    if not valid_callback_token(options.callback_token):
        raise InvalidInput("invalid callback token: use 32-256 letters, digits, '-', '_', '.' or '~'")
    for name in ("update_timeout", "drop_idle_publisher"):
        if not _DURATION.fullmatch(getattr(options, name)):
            raise InvalidInput(f"invalid {name.replace('_', '-')} {getattr(options, name)!r}: use e.g. 30s")
    allowed = [_private_network(cidr) for cidr in options.stat_allow]
    if not _listen_is_loopback(options.http_listen) and all(net.is_loopback for net in allowed):
        raise InvalidInput(f"--http-listen {options.http_listen!r} is not loopback: name the platform's network with "
                           "--stat-allow CIDR, or keep /stat and /control on 127.0.0.1")
    base = options.callback_url.rstrip("/")
    values = {
        "module_path": options.module_path,
        "prefix": str(options.prefix),
        "daemon": "daemon off;" if options.foreground else '# daemon: on the command line (nginx -g "daemon off;")',
        "error_log": options.error_log or f"{options.prefix}/error.log",
        "stat_allow": "\n".join(f"            allow {net};" for net in allowed),
        "rtmp_listen": options.rtmp_listen,
        "http_listen": options.http_listen,
        "app": options.app,
        "update_timeout": options.update_timeout,
        "drop_idle_publisher": options.drop_idle_publisher,
        "callback_url": base,
        "callback_token": options.callback_token,
        "play_control": (f"            on_play {base}/rtmp/on_play?{TOKEN_PARAM}={options.callback_token};"
                         if options.play_control else ""),
    }
    return _PLACEHOLDER.sub(lambda m: values[m[1]], template.read_text(encoding="utf-8"))


def _private_network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network /stat and /control may be opened to: loopback or private, never public."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise InvalidInput(f"invalid --stat-allow {cidr!r}: use a CIDR like 172.16.0.0/12") from None
    if not (net.is_loopback or net.is_private):
        raise InvalidInput(f"invalid --stat-allow {cidr!r}: /stat and /control may only be opened to private networks")
    return net


def _listen_is_loopback(listen: str) -> bool:
    """`127.0.0.1:8088` yes; `8088` or `0.0.0.0:8088` no (they accept other hosts)."""
    address = listen.split()[0] if listen.split() else ""
    return ":" in address and address.rsplit(":", 1)[0] in _LOOPBACK


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    line: int
    message: str


@dataclass(frozen=True)
class _Directive:
    name: str
    args: tuple[str, ...]
    line: int
    context: tuple[str, ...]  # enclosing blocks with their first argument: ("http", "server", "location /stat")


_TOKEN = re.compile(r"""#[^\n]*|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[{};]|[^\s{};"'#]+""")


def parse(text: str) -> list[_Directive]:
    """A small nginx config reader: directives with their arguments, line numbers and enclosing blocks."""
    directives: list[_Directive] = []
    stack: list[str] = []
    words: list[str] = []
    start = 0
    for match in _TOKEN.finditer(text):
        token, line = match.group(), text.count("\n", 0, match.start()) + 1
        if token.startswith("#"):
            continue
        if token in ("{", ";"):
            if words:
                directives.append(_Directive(words[0], tuple(words[1:]), start, tuple(stack)))
            if token == "{":
                stack.append(" ".join(words[:2]))
            words = []
        elif token == "}":
            if stack:
                stack.pop()
            words = []
        else:
            if not words:
                start = line
            words.append(token.strip("\"'"))
    return directives


def check_config(text: str) -> list[Finding]:
    """Problems that weaken stream authentication, by line; an empty list means none were found."""
    directives = parse(text)
    findings: list[Finding] = []

    def add(level: Literal["error", "warning"], line: int, message: str) -> None:
        findings.append(Finding(level, line, message))

    named = {d.name: d for d in directives}
    workers = named.get("worker_processes")
    if workers is None or workers.args[:1] != ("1",):
        add("warning", workers.line if workers else 1,
            "worker_processes is not 1: each worker keeps its own /stat and /control, so kicks and live lists miss "
            "streams")
    for d in directives:
        if d.name == "notify_method" and d.args[:1] == ("get",):
            add("error", d.line, "notify_method get puts stream keys in callback URLs and logs: use post")
        if d.name.startswith("on_") and d.args and d.args[0].startswith("https://"):
            add("error", d.line, f"{d.name} uses https://, which nginx-rtmp cannot call: every callback fails")
        if d.name.startswith("on_") and d.args and not _carries_token(d.args[0]):
            add("error", d.line, f"{d.name} has no ?{TOKEN_PARAM}= callback token: the API refuses every callback "
                                 "without it (render the config with `streams nginx-config`)")
        if d.name == "access_log" and "rtmp" in [c.split()[0] for c in d.context] and d.args[:1] != ("off",):
            add("warning", d.line, "rtmp access_log is on: it records the original stream name and ?key= argument")
        if d.name == "log_format" and any("$args" in a or "$name" in a for a in d.args):
            add("warning", d.line, f"log_format {d.args[0] if d.args else ''} logs $name or $args: stream keys leak")
        if d.name in ("rtmp_stat", "rtmp_control"):
            findings.extend(_public_location(directives, d))
    rtmp_apps = [d for d in directives if d.name == "application"]
    rtmp_logs = [d for d in directives if d.name == "access_log" and d.context[:1] == ("rtmp",)]
    if any(d.name == "rtmp" for d in directives) and not rtmp_logs:
        add("warning", named["rtmp"].line, "rtmp has no `access_log off`: its default log records ?key= arguments")
    for app in rtmp_apps:
        inside = [d.name for d in directives if f"application {app.args[0] if app.args else ''}" in d.context]
        if "on_publish" not in inside:
            add("error", app.line, f"application {app.args[0] if app.args else ''} has no on_publish: anyone may "
                                   "publish")
        elif "on_update" not in inside or "notify_update_timeout" not in named:
            add("warning", app.line, "no on_update with notify_update_timeout: revoked or expired keys keep "
                                     "publishing until they disconnect")
    return sorted(findings, key=lambda f: f.line)


def _carries_token(url: str) -> bool:
    return any(name == TOKEN_PARAM and value for name, value in parse_qsl(urlsplit(url).query))


def _is_private(value: str) -> bool:
    if value == "unix:":
        return True
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False  # `all` or a name
    return net.is_loopback or net.is_private


def _public_location(directives: list[_Directive], d: _Directive) -> list[Finding]:
    """A stat/control location is private when its server listens on loopback only or it denies all others."""
    siblings = [x for x in directives if x.context == d.context]
    allowed = [x.args[0] for x in siblings if x.name == "allow" and x.args]
    denies_all = any(x.name == "deny" and x.args[:1] == ("all",) for x in siblings)
    if denies_all and all(_is_private(a) for a in allowed):
        return []
    server = d.context[:-1]
    listens = [x for x in directives if x.name == "listen" and x.context == server]
    if listens and all(_listen_is_loopback(x.args[0]) for x in listens if x.args):
        return []
    return [Finding("error", d.line, f"{d.name} is reachable from other hosts: bind its server to 127.0.0.1 or "
                                     "`allow 127.0.0.1; deny all;`")]
