"""Route filters shared by HTTPRoute and GRPCRoute (apis/v1 httproute_types.go): header
modifiers, RequestRedirect, URLRewrite, RequestMirror and CORS, plus SessionPersistence.
ExtensionRef and ExternalAuth are refused by path."""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.mesh.fields import HEADER_NAME, Fields, Item
from controlplane.mesh.kinds.refs import BackendRef, parse_backend_object

PRECISE_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CORS_ORIGIN = re.compile(r"(^\*$)|(^([a-zA-Z][a-zA-Z0-9+\-.]+):\/\/([^:/?#]+)(:([0-9]{1,5}))?$)")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


@dataclass(frozen=True)
class HeaderModifier:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class PathModifier:
    kind: str  # "ReplaceFullPath" | "ReplacePrefixMatch"
    value: str


@dataclass(frozen=True)
class Redirect:
    scheme: str | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = None
    status_code: int = 302


@dataclass(frozen=True)
class Rewrite:
    hostname: str | None = None
    path: PathModifier | None = None


@dataclass(frozen=True)
class Mirror:
    backend: BackendRef
    percent: float = 100.0  # of requests, 0..100


@dataclass(frozen=True)
class Cors:
    allow_origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int = 5  # seconds (HTTPCORSFilter.maxAge default)


@dataclass(frozen=True)
class Filters:
    """The filters of one rule (or one backendRef), at most one of each kind but mirrors."""

    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    mirrors: tuple[Mirror, ...] = ()
    cors: Cors | None = None


@dataclass(frozen=True)
class SessionPersistence:
    """GEP-1619, cookie type: `name` is the cookie, `max_age` its Max-Age (None: a session
    cookie, lifetimeType Session)."""

    name: str
    max_age: float | None = None


HTTP_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect",
                "URLRewrite", "RequestMirror", "CORS")
GRPC_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror")
_FIELD_OF = {"RequestHeaderModifier": "requestHeaderModifier",
             "ResponseHeaderModifier": "responseHeaderModifier",
             "RequestRedirect": "requestRedirect", "URLRewrite": "urlRewrite",
             "RequestMirror": "requestMirror", "CORS": "cors"}
_REFUSED = {"ExtensionRef": "extensionRef", "ExternalAuth": "externalAuth"}


def parse_filters(fields: Fields, key: str, allowed: tuple[str, ...]) -> Filters:
    """`key` is "filters" of a rule or of a backendRef; `allowed` the filter types taken."""
    items = fields.items(key, lambda item: _filter(item, allowed), max_items=16)
    found: dict[str, object] = {}
    mirrors: list[Mirror] = []
    for index, (kind, value) in enumerate(items):
        if kind == "RequestMirror":
            assert isinstance(value, Mirror)
            mirrors.append(value)
            continue
        if kind in found:
            raise fields.context.error((*fields.path, key, index),
                                       f"{kind} filter cannot be repeated")
        found[kind] = value
    if "RequestRedirect" in found and "URLRewrite" in found:
        raise fields.error(key, "May specify either RequestRedirect or URLRewrite, but not "
                                "both")
    return Filters(
        request_headers=found.get("RequestHeaderModifier"),  # type: ignore[arg-type]
        response_headers=found.get("ResponseHeaderModifier"),  # type: ignore[arg-type]
        redirect=found.get("RequestRedirect"),  # type: ignore[arg-type]
        rewrite=found.get("URLRewrite"),  # type: ignore[arg-type]
        mirrors=tuple(mirrors),
        cors=found.get("CORS"))  # type: ignore[arg-type]


def _filter(item: Item, allowed: tuple[str, ...]) -> tuple[str, object]:
    def parse(fields: Fields) -> tuple[str, object]:
        kind = fields.req_str("type")
        if kind in _REFUSED:
            raise fields.error("type", f"{kind} filters are not supported by Pointsman")
        if kind not in allowed:
            raise fields.error("type", f"unsupported value {kind!r} (supported: "
                                       f"{', '.join(allowed)})")
        for other, name in _FIELD_OF.items():
            if other != kind and fields.has(name):
                raise fields.error(name, f"must not be set for a filter of type {kind}")
        parsers = {"RequestHeaderModifier": _header_modifier,
                   "ResponseHeaderModifier": _header_modifier,
                   "RequestRedirect": _redirect, "URLRewrite": _rewrite,
                   "RequestMirror": _mirror, "CORS": _cors}
        value = fields.obj(_FIELD_OF[kind], parsers[kind], required=True)
        return kind, value
    return item.obj(parse)


def _header_modifier(fields: Fields) -> HeaderModifier:
    set_ = fields.obj_list("set", _header, max_items=16)
    add = fields.obj_list("add", _header, max_items=16)
    remove = fields.text_list("remove", max_items=16, pattern=HEADER_NAME, min_len=1,
                             max_len=256)
    seen: dict[str, str] = {}
    for action, names in (("set", [name for name, _ in set_]),
                          ("add", [name for name, _ in add]), ("remove", list(remove))):
        for index, name in enumerate(names):
            lower = name.lower()
            if lower in seen:
                raise fields.context.error((*fields.path, action, index),
                                           f"header {name!r} already has an action in this "
                                           f"filter ({seen[lower]}): one action per header")
            seen[lower] = action
    return HeaderModifier(set_, add, remove)


def _header(fields: Fields) -> tuple[str, str]:
    return (fields.req_str("name", min_len=1, max_len=256, pattern=HEADER_NAME),
            fields.req_str("value", max_len=4096))


def _path_modifier(fields: Fields) -> PathModifier:
    kind = fields.req_str("type", enum=("ReplaceFullPath", "ReplacePrefixMatch"))
    full = fields.text("replaceFullPath", max_len=1024)
    prefix = fields.text("replacePrefixMatch", max_len=1024)
    if kind == "ReplaceFullPath":
        if prefix is not None:
            raise fields.error("replacePrefixMatch", "type must be 'ReplacePrefixMatch' when "
                                                     "replacePrefixMatch is set")
        if full is None:
            raise fields.error("replaceFullPath", "must be specified when type is "
                                                  "'ReplaceFullPath'")
        return PathModifier(kind, full)
    if full is not None:
        raise fields.error("replaceFullPath", "type must be 'ReplaceFullPath' when "
                                              "replaceFullPath is set")
    if prefix is None:
        raise fields.error("replacePrefixMatch", "must be specified when type is "
                                                 "'ReplacePrefixMatch'")
    return PathModifier(kind, prefix)


def _redirect(fields: Fields) -> Redirect:
    code = fields.integer("statusCode", default=302)
    if code not in (301, 302, 303, 307, 308):
        raise fields.error("statusCode", f"unsupported value {code!r} (supported: 301, 302, "
                                         "303, 307, 308)")
    return Redirect(
        scheme=fields.text("scheme", enum=("http", "https")),
        hostname=fields.text("hostname", min_len=1, max_len=253, pattern=PRECISE_HOSTNAME),
        path=fields.obj("path", _path_modifier),
        port=fields.integer("port", minimum=1, maximum=65535),
        status_code=code)


def _rewrite(fields: Fields) -> Rewrite:
    return Rewrite(
        hostname=fields.text("hostname", min_len=1, max_len=253, pattern=PRECISE_HOSTNAME),
        path=fields.obj("path", _path_modifier))


def _mirror(fields: Fields) -> Mirror:
    def backend(inner: Fields) -> BackendRef:
        group, kind, name, namespace, port = parse_backend_object(inner)
        return BackendRef(group, kind, name, namespace, port)
    ref = fields.obj("backendRef", backend, required=True)
    assert ref is not None
    percent = fields.integer("percent", minimum=0, maximum=100)
    fraction = fields.obj("fraction", _fraction)
    if percent is not None and fraction is not None:
        raise fields.error("fraction", "Only one of percent or fraction may be specified in "
                                       "HTTPRequestMirrorFilter")
    value = 100.0 if percent is None and fraction is None else (
        float(percent) if percent is not None else float(fraction or 0.0))
    return Mirror(ref, value)


def _fraction(fields: Fields) -> float:
    numerator = fields.integer("numerator", required=True, minimum=0)
    denominator = fields.integer("denominator", default=100, minimum=1)
    assert numerator is not None and denominator is not None
    if numerator > denominator:
        raise fields.error("numerator", "must be less than or equal to denominator")
    return 100.0 * numerator / denominator


def _cors(fields: Fields) -> Cors:
    origins = fields.text_list("allowOrigins", max_items=64, pattern=CORS_ORIGIN, min_len=1,
                              max_len=253)
    methods = fields.items("allowMethods", _method_or_star, max_items=9)
    for key, values in (("allowOrigins", origins), ("allowMethods", methods)):
        if "*" in values and len(values) > 1:
            raise fields.error(key, f"{key} cannot contain '*' alongside other values")
    return Cors(
        allow_origins=origins,
        allow_credentials=bool(fields.flag("allowCredentials", default=False)),
        allow_methods=methods,
        allow_headers=fields.text_list("allowHeaders", max_items=64, min_len=1, max_len=256),
        expose_headers=fields.text_list("exposeHeaders", max_items=64, min_len=1,
                                       max_len=256),
        max_age=fields.integer("maxAge", default=5, minimum=1) or 5)


def _method_or_star(item: Item) -> str:
    return item.text(enum=(*METHODS, "*"))


def parse_session_persistence(fields: Fields) -> SessionPersistence:
    name = fields.text("sessionName", min_len=1, max_len=128)
    absolute = fields.duration("absoluteTimeout")
    kind = fields.text("type", default="Cookie", enum=("Cookie", "Header"))
    if kind == "Header":
        raise fields.error("type", "Header session persistence is not supported by Pointsman "
                                   "(Cookie is)")
    lifetime = fields.obj("cookieConfig", _cookie_config) or "Session"
    if lifetime == "Permanent" and absolute is None:
        raise fields.error("absoluteTimeout", "AbsoluteTimeout must be specified when cookie "
                                              "lifetimeType is Permanent")
    if lifetime == "Session" and absolute is not None:
        raise fields.error("absoluteTimeout", "a Session cookie with an absolute timeout the "
                                              "proxy tracks is not supported (use "
                                              "lifetimeType Permanent)")
    fields.done(unsupported=("idleTimeout",))
    return SessionPersistence(name or "session", absolute if lifetime == "Permanent" else None)


def _cookie_config(fields: Fields) -> str:
    return fields.text("lifetimeType", default="Session", enum=("Session", "Permanent")) \
        or "Session"
