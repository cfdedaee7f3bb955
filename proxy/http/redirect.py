"""A route's `redirect` action (route_components.proto RedirectAction), answered locally:
Envoy's router sends redirects as direct responses (details direct_response)."""

from __future__ import annotations

from proxy.codec.headers import Headers, RequestHead
from proxy.http.filter import LocalReply
from proxy.http.forward_plan import rewrite_path
from proxy.model.route import RedirectAction, Route


def redirect_reply(action: RedirectAction, request: RequestHead, route: Route) -> LocalReply:
    scheme = action.scheme or request.scheme
    host, port = _host_and_port(request.authority)
    if action.host:
        host = action.host
    if action.port:
        port = str(action.port)
    # Envoy drops a port that is the default of the old or the new scheme.
    if port in ("80", "443") and (scheme != request.scheme or
                                  (scheme, port) in (("http", "80"), ("https", "443"))):
        port = ""
    path, query = _path_and_query(action, request, route)
    location = f"{scheme}://{host}{':' + port if port else ''}{path}{'?' + query if query else ''}"
    return LocalReply(action.response_code, headers=Headers([("location", location)]),
                      details="direct_response")


def _host_and_port(authority: str) -> tuple[str, str]:
    if ":" in authority and not authority.endswith("]"):
        host, _, port = authority.rpartition(":")
        return host, port
    return authority, ""


def _path_and_query(action: RedirectAction, request: RequestHead,
                    route: Route) -> tuple[str, str]:
    path, _, query = request.path.partition("?")
    if action.path:
        path, _, new_query = action.path.partition("?")
        query = new_query if "?" in action.path else query
    else:
        path = rewrite_path(path, route, action.prefix_rewrite, action.regex_rewrite)
    if action.strip_query:
        query = ""
    return path, query
