"""Registry credentials the way docker finds them: ``config.json`` and credential helpers.

``$DOCKER_CONFIG/config.json`` (else ``~/.docker/config.json``): ``credHelpers[host]`` names a
helper for one registry, ``credsStore`` one for all, and ``auths[host].auth`` (base64
``user:password``, or ``username``/``password``) holds inline credentials. A helper is the
program ``docker-credential-NAME``; ``get`` reads the server URL on stdin and prints
``{"Username": ..., "Secret": ...}``. Docker Hub is known by its legacy key
``https://index.docker.io/v1/``. Nothing here is cached on disk or logged.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from composer import canonjson, tools
from composer.errors import ComposerError
from composer.oci.refs import DEFAULT_REGISTRY

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {DEFAULT_REGISTRY, "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY}

Helper = Callable[[str, str], "tuple[str, str] | None"]
"""(helper name, server URL) -> (username, secret), or None when the helper has none."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def load_config(path: Path) -> dict:
    """The parsed config, or {} when there is none; a broken one is an error, not ignored."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ComposerError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = canonjson.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ComposerError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ComposerError(f"{path}: not a JSON object")
    return doc


def _key_host(key: str) -> str:
    """``https://host:port/v1/`` or ``host:port`` -> ``host:port`` (lowercase)."""
    if key in _HUB_NAMES:
        return DEFAULT_REGISTRY
    text = key.split("://", 1)[1] if "://" in key else key
    return text.split("/", 1)[0].lower()


def server_url(registry: str) -> str:
    """What docker passes to a helper for this registry."""
    return DOCKER_HUB_KEY if registry == DEFAULT_REGISTRY else registry


def run_helper(name: str, server: str) -> tuple[str, str] | None:
    """Run ``docker-credential-NAME get``. It sees the user's environment (``inherit``): it may
    need a keyring's or a cloud CLI's variables, and it shapes no output bytes."""
    tools.find_tool(f"docker-credential-{name}",
                    f"credential helper {name!r} named in the docker config")
    proc = tools.run([f"docker-credential-{name}", "get"], input=server.encode(), capture=True,
                     check=False, timeout=60, inherit=True)
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        detail = (out + proc.stderr.decode(errors="replace")).strip()
        if "credentials not found" in detail.lower():
            return None
        last = detail.splitlines()[-1] if detail else ""
        raise ComposerError(f"docker-credential-{name} get exited with status "
                            f"{proc.returncode}" + (f": {last}" if last else ""))
    return parse_helper_output(out, name)


def parse_helper_output(out: str, name: str) -> tuple[str, str] | None:
    try:
        doc = canonjson.loads(out.encode())
    except ValueError:
        raise ComposerError(f"docker-credential-{name} get printed something that is "
                            "not JSON") from None
    user, secret = (doc.get("Username"), doc.get("Secret")) if isinstance(doc, dict) else (0, 0)
    if not isinstance(user, str) or not isinstance(secret, str):
        raise ComposerError(f"docker-credential-{name} get gave no Username/Secret")
    return (user, secret) if secret else None


def _inline(entry: object, where: str) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = base64.b64decode(entry["auth"], validate=True).decode() \
                .partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ComposerError(f"{where}: malformed auth value") from None
        if not sep:
            raise ComposerError(f"{where}: auth value is not user:password")
        return user, password
    login, secret = entry.get("username"), entry.get("password")
    if isinstance(login, str) and isinstance(secret, str) and login:
        return login, secret
    return None


def credentials_from(config: dict, path: Path, helper: Helper = run_helper
                     ) -> Callable[[str], tuple[str, str] | None]:
    """Registry host -> (username, password) per a parsed docker config; helpers run lazily."""
    helpers = config.get("credHelpers")
    helpers = helpers if isinstance(helpers, dict) else {}
    store = config.get("credsStore") if isinstance(config.get("credsStore"), str) else None
    auths = config.get("auths")
    auths = auths if isinstance(auths, dict) else {}
    by_host_helper = {_key_host(k): v for k, v in sorted(helpers.items()) if isinstance(v, str)}
    by_host_auth: dict[str, tuple[str, object]] = {}
    for key in sorted(auths):
        by_host_auth.setdefault(_key_host(key), (key, auths[key]))

    def lookup(registry: str) -> tuple[str, str] | None:
        host = _key_host(registry)
        name = by_host_helper.get(host)
        if name:
            return helper(name, server_url(host))
        if host in by_host_auth:
            key, entry = by_host_auth[host]
            found = _inline(entry, f"{path}: auths[{key!r}]")
            if found:
                return found
        if store:
            return helper(store, server_url(host))
        return None

    return lookup


def docker_credentials(environ: Mapping[str, str] | None = None,
                       helper: Helper = run_helper) -> Callable[[str], tuple[str, str] | None]:
    """Credentials per the user's docker config (read once; helpers run when first needed)."""
    path = config_path(environ)
    return credentials_from(load_config(path), path, helper)
