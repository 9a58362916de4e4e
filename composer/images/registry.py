"""A small client for the OCI distribution API (registry v2): the one place registry HTTP lives.

Pulling is here: ``GET`` a manifest (by tag or digest) and stream a blob. Pushing
(:mod:`.push`) makes its requests through :meth:`RegistryClient.send` and
:meth:`RegistryClient.with_retries`. Bearer tokens are fetched on a 401 challenge (cached per
repository and actions: ``pull``, or ``pull,push``); redirects are followed by hand so that
``Authorization`` never leaves the registry's origin (blob redirects usually point at a CDN);
every request has a timeout; connection failures, 429 and 5xx are retried a bounded number of
times with backoff.

The client trusts nothing it returns: callers verify every byte against its digest (the cache
does that while storing). Credentials come through ``credentials`` (see :mod:`.auth`: docker
``config.json`` and credential helpers), used for the token request and for Basic challenges.
Plain HTTP is used for loopback registries and for hosts named in ``insecure``
(``--insecure-registry``), never otherwise; a loopback registry that answers plain HTTP with
"HTTP request to an HTTPS server" (a TLS registry on 127.0.0.1, as linuxkit's client finds by
trying HTTPS first) is spoken to over HTTPS from then on.

Mirrors (``--mirror REGISTRY=URL``, linuxkit's spelling, see :mod:`.network`) rewrite where pulls
go: the manifest and blob requests for a registry's repositories go to the mirror's URL (its
scheme and any path prefix), never to the origin, exactly as linuxkit does. Pushes always go to
the registry the ref names. ``extra_ca`` (PEM, from ``--cert-file``) adds certificate
authorities to the ones requests trusts by default.
"""

from __future__ import annotations

import base64
import io
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import requests.utils
import urllib3.exceptions

from composer import __version__, canonjson
from composer.errors import ComposerError
from composer.oci.media import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from composer.oci.refs import Ref, is_loopback_host

if TYPE_CHECKING:
    from _typeshed import SupportsRead

ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
MAX_MANIFEST_BYTES = 4 << 20  # manifests are small; refuse to buffer an endless one
MAX_REDIRECTS = 5
USER_AGENT = f"image-composer/{__version__}"
_NO_PROXY = {"http": None, "https": None, "all": None}  # loopback never goes through a proxy
_REDIRECTS = (301, 302, 303, 307, 308)

Credentials = Callable[[str], "tuple[str, str] | None"]
"""Registry host -> (username, password), or None for anonymous."""

T = TypeVar("T")


class RegistryError(ComposerError):
    """A registry refused a request or could not be reached."""


class TransientError(RegistryError):
    """Worth another try: connection failures, timeouts, 429 and 5xx answers."""


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry sent it: raw bytes (their sha256 is the digest)."""

    data: bytes
    content_type: str | None
    digest_header: str | None
    url: str


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="a:b:pull,push"`` -> ("bearer", params)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for match in re.finditer(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))', rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme.lower(), params


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    """The useful end of a requests/urllib3 exception chain: 'Connection refused', not a repr."""
    text = str(exc)
    found = re.findall(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if found:
        return found[-1].strip()
    ssl = re.search(r"\[SSL: [A-Z_]+\] (.+?)(?: \(_ssl\.c:\d+\))?[\"']\)", text)
    if ssl:
        return ssl.group(1).strip()
    if isinstance(exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError):
        return "timed out"
    return _one_line(text) or type(exc).__name__


def _error_detail(resp: requests.Response, body: bytes | None = None) -> str:
    """The registry's own error message (``{"errors": [{"code", "message"}]}``), if any."""
    try:
        if body is None:
            body = resp.raw.read(64 << 10, decode_content=True)
        errors = canonjson.loads(body).get("errors") or []
        first = errors[0]
        return _one_line(str(first.get("message") or first.get("code")))
    except Exception:  # no JSON error body: fall back to the HTTP reason
        return _one_line(resp.reason or "request failed")


class _ResponseStream(io.RawIOBase):
    """A response body as a raw stream; network failures become :class:`TransientError`."""

    def __init__(self, resp: requests.Response, what: str):
        super().__init__()
        self._resp = resp
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._resp.raw.read(len(buffer), decode_content=False)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise TransientError(f"{self._what}: download failed: {_reason(exc)}") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._resp.close()
        super().close()


class _ExtraCAAdapter(requests.adapters.HTTPAdapter):
    """HTTPS verified against requests' default CA bundle plus extra PEM certificates."""

    def __init__(self, context: ssl.SSLContext):
        self._context = context
        super().__init__()

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        if verify is not False and host_params.get("scheme") == "https":
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            pool_kwargs["ssl_context"] = self._context
        return host_params, pool_kwargs


def ca_context(extra_pem: str) -> ssl.SSLContext:
    """requests' default trust (its CA bundle) plus ``extra_pem``; a bad PEM is an error."""
    context = ssl.create_default_context(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)
    try:
        context.load_verify_locations(cadata=extra_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ComposerError(f"extra CA certificates: not PEM certificates ({exc})") from None
    return context


class RegistryClient:
    """Talks to registries; one per process is enough (thread-safe, keeps tokens per repository)."""

    def __init__(self, *, credentials: Credentials | None = None,
                 timeout: tuple[float, float] = (15.0, 60.0), retries: int = 3,
                 backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None,
                 insecure: frozenset[str] | set[str] = frozenset(),
                 mirrors: Mapping[str, str] | None = None, extra_ca: str = ""):
        self._credentials = credentials
        self._insecure = frozenset(h.lower() for h in insecure)
        self._mirrors = dict(mirrors or {})
        # hosts whose scheme is known from a mirror URL or found out (a TLS loopback registry)
        self._tls: set[str] = set()
        self._plain: set[str] = set()
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        if extra_ca:
            self._session.mount("https://", _ExtraCAAdapter(ca_context(extra_ca)))
        # (registry, repository, actions) -> Authorization
        self._auth: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    # -- public ----------------------------------------------------------------------------
    def repo_url(self, ref: Ref) -> str:
        host = ref.registry.lower()
        with self._lock:
            tls, plain = host in self._tls, host in self._plain
        if not tls:
            plain = plain or ref.is_loopback or host in self._insecure
        scheme = "http" if plain else "https"
        return f"{scheme}://{ref.api_host}/v2/{ref.repository}"

    def pull_ref(self, ref: Ref) -> Ref:
        """Where pulls of ``ref`` go: its mirror (``--mirror``), if one is set, else ``ref``."""
        from composer.images.network import mirror_for

        found = mirror_for(self._mirrors, ref)
        if found is None:
            return ref
        target, tls = found
        with self._lock:
            (self._tls if tls else self._plain).add(target.registry.lower())
        return target

    def get_manifest(self, ref: Ref, reference: str) -> Manifest:
        """The manifest named by a tag or digest, unverified (the caller hashes it)."""
        what = str(ref) if reference in (ref.tag, ref.digest) else f"{ref}: manifest {reference}"
        ref = self.pull_ref(ref)
        url = f"{self.repo_url(ref)}/manifests/{reference}"

        def read(resp: requests.Response) -> Manifest:
            data = _ResponseStream(resp, what).read(MAX_MANIFEST_BYTES + 1)
            if len(data) > MAX_MANIFEST_BYTES:
                raise RegistryError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes")
            ctype = resp.headers.get("Content-Type")
            return Manifest(data, ctype.split(";")[0].strip() if ctype else None,
                            resp.headers.get("Docker-Content-Digest"), resp.url or url)

        return self.with_retries(lambda: self._consume(ref, url, what, ACCEPT, read))

    def fetch_blob(self, ref: Ref, digest: str, consume: Callable[[BinaryIO], T],
                   what: str | None = None) -> T:
        """Stream a blob into ``consume`` (which must verify it); retried as a whole."""
        label = what or f"{ref}: blob {digest}"
        ref = self.pull_ref(ref)
        url = f"{self.repo_url(ref)}/blobs/{digest}"

        def read(resp: requests.Response) -> T:
            with _ResponseStream(resp, label) as stream:
                return consume(io.BufferedReader(stream, 1 << 20))

        return self.with_retries(lambda: self._consume(ref, url, label, None, read))

    def with_retries(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` again (with exponential backoff) while it raises TransientError."""
        for number in range(self._retries + 1):
            try:
                return attempt()
            except TransientError:
                if number == self._retries:
                    raise
                self._sleep(self._backoff * (2 ** number))
        raise AssertionError("unreachable")

    def send(self, ref: Ref, method: str, url: str, what: str, *, ok: tuple[int, ...] = (200,),
             headers: dict[str, str] | None = None, params: dict | None = None,
             body: Callable[[], bytes | SupportsRead[bytes]] | None = None, follow: bool = True,
             stream: bool = False, scope: str = "pull",
             timeout: tuple[float, float] | None = None) -> requests.Response:
        """One request to ``ref``'s registry; returns the answer if its status is in ``ok``.

        A 401 from the registry's origin is answered once (a token for ``scope``'s actions, or
        Basic); redirects are followed by hand if ``follow``, and ``Authorization`` only goes to
        ``url``'s origin. ``body`` makes the request body (each send needs a fresh one). With
        ``stream`` the caller reads and closes the answer, else it is read whole and closed.
        Connection failures, 429 and 5xx raise :class:`TransientError` (see :meth:`with_retries`).
        """
        origin = _origin(url)
        key = (ref.registry, ref.repository, scope)
        authenticated = False
        current = url
        for _ in range(MAX_REDIRECTS + 2):
            same_origin = _origin(current) == origin
            sent = dict(headers or {})
            with self._lock:
                auth = self._auth.get(key)
            if auth and same_origin:
                sent["Authorization"] = auth
            resp = self._request(method, current, what, headers=sent, params=params,
                                 data=body() if body else None, timeout=timeout)
            status = resp.status_code
            if status in ok:
                return resp if stream else self._read_whole(resp, what)
            error_body = None
            if status == 400:
                error_body = self._read_error_body(resp)
                if self._speaks_tls(current, error_body, method, what):
                    resp.close()
                    current = "https" + current[len("http"):]
                    origin = _origin(current)
                    continue
            if follow and status in _REDIRECTS and resp.headers.get("Location"):
                current = urljoin(current, resp.headers["Location"])
                resp.close()
                continue
            if status == 401 and same_origin and not authenticated:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.close()
                header = self._authenticate(ref, challenge, current, what, scope)
                with self._lock:
                    self._auth[key] = header
                authenticated = True
                continue
            detail = _error_detail(resp, error_body)
            resp.close()
            where = current if method == "GET" else f"{method} {current}"
            message = f"{what}: {detail} ({status} from {where})"
            if status == 429 or status >= 500:
                raise TransientError(message)
            if status == 401:
                message += self._login_hint(ref)
            raise RegistryError(message)
        raise RegistryError(f"{what}: too many redirects (from {url})")

    # -- plumbing --------------------------------------------------------------------------
    @staticmethod
    def _read_error_body(resp: requests.Response) -> bytes:
        try:
            return resp.raw.read(64 << 10, decode_content=True) or b""
        except Exception:  # an unreadable error body: the status line still says enough
            return b""

    def _speaks_tls(self, url: str, body: bytes, method: str, what: str) -> bool:
        """A plain-HTTP request to a loopback host answered as a TLS server answers one (Go's
        "Client sent an HTTP request to an HTTPS server", nginx's "plain HTTP request was sent
        to HTTPS port"): the host speaks HTTPS from now on, as linuxkit's client would find.
        The answer to a HEAD has no body to say so: a GET of ``/v2/`` asks again."""
        parts = urlsplit(url)
        host = parts.netloc.lower()
        if parts.scheme != "http" or not is_loopback_host(host) or host in self._insecure:
            return False
        if method == "HEAD" and not body:
            probe = self._request("GET", f"http://{parts.netloc}/v2/", what, headers={})
            try:
                body = self._read_error_body(probe) if probe.status_code == 400 else b""
            finally:
                probe.close()
        if b"HTTPS" not in body[:512]:
            return False
        with self._lock:
            if host in self._plain:  # a mirror named with http://: the user said so
                return False
            self._tls.add(host)
        return True

    def _consume(self, ref: Ref, url: str, what: str, accept: str | None,
                 read: Callable[[requests.Response], T]) -> T:
        resp = self.send(ref, "GET", url, what, headers={"Accept": accept} if accept else None,
                         stream=True)
        try:
            return read(resp)
        finally:
            resp.close()

    @staticmethod
    def _read_whole(resp: requests.Response, what: str) -> requests.Response:
        """Load a (small) answer's body into ``resp.content`` and release the connection."""
        try:
            resp.content  # noqa: B018 - reading it is the point
        except requests.RequestException as exc:
            raise TransientError(f"{what}: reading the answer from {urlsplit(resp.url).netloc} "
                                 f"failed: {_reason(exc)}") from None
        finally:
            resp.close()
        return resp

    def _request(self, method: str, url: str, what: str, *, headers: dict[str, str],
                 params: dict | None = None, auth: tuple[str, str] | None = None,
                 data: bytes | SupportsRead[bytes] | None = None,
                 timeout: tuple[float, float] | None = None) -> requests.Response:
        host = urlsplit(url).netloc
        loopback = is_loopback_host(urlsplit(url).hostname or "")
        proxies = _NO_PROXY if loopback else None  # requests drops None (its stub wants str)
        try:
            return self._session.request(method, url, headers=headers, params=params, auth=auth,
                                         data=data, timeout=timeout or self._timeout,
                                         stream=True, allow_redirects=False,
                                         proxies=proxies)  # type: ignore[arg-type]
        except requests.exceptions.SSLError as exc:
            raise RegistryError(f"{what}: TLS error talking to {host}: {_reason(exc)}") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise TransientError(f"{what}: cannot connect to {host}: {_reason(exc)}") from None
        except requests.RequestException as exc:
            raise RegistryError(f"{what}: request to {host} failed: {_reason(exc)}") from None

    def _authenticate(self, ref: Ref, challenge: str, url: str, what: str, scope: str) -> str:
        """An Authorization header answering a 401 challenge (anonymous unless credentials).

        Pulling asks for the scope the challenge names; wider actions (``pull,push``) are asked
        for explicitly, since the challenge to a first HEAD or GET names only ``pull``.
        """
        scheme, params = parse_challenge(challenge)
        creds = self._credentials(ref.registry) if self._credentials else None
        if scheme == "bearer" and params.get("realm"):
            realm = params["realm"]
            realm_host = (urlsplit(realm).hostname or "").lower()
            if creds and urlsplit(realm).scheme != "https" and not is_loopback_host(
                    realm_host) and urlsplit(realm).netloc.lower() not in self._insecure:
                raise RegistryError(f"{what}: refusing to send credentials to {realm}")
            wanted = f"repository:{ref.repository}:{scope}"
            query = {"scope": (params.get("scope") or wanted) if scope == "pull" else wanted}
            if params.get("service"):
                query["service"] = params["service"]
            resp = self._request("GET", realm, what, headers={}, auth=creds, params=query)
            try:
                if resp.status_code != 200:
                    detail = _error_detail(resp)
                    message = f"{what}: token request failed: {detail} ({resp.status_code} " \
                              f"from {realm})"
                    if resp.status_code >= 500 or resp.status_code == 429:
                        raise TransientError(message)
                    raise RegistryError(message)
                body = _ResponseStream(resp, what).read(MAX_MANIFEST_BYTES)
            finally:
                resp.close()
            try:
                answer = canonjson.loads(body)
                token = answer.get("token") or answer.get("access_token")
            except (ValueError, AttributeError):
                token = None
            if not isinstance(token, str) or not token:
                raise RegistryError(f"{what}: token server {realm} sent no token")
            return f"Bearer {token}"
        if scheme == "basic" and creds:
            raw = f"{creds[0]}:{creds[1]}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        raise RegistryError(f"{what}: authentication required (401 from {url})"
                            + self._login_hint(ref))

    def _login_hint(self, ref: Ref) -> str:
        creds = self._credentials(ref.registry) if self._credentials else None
        if creds:
            return f"; the credentials for {ref.registry} were refused"
        return f"; no credentials for {ref.registry} (docker login, or docker config.json)"
