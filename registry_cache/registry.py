"""Ask a Docker/OCI registry (distribution v2 HTTP API) whether an image exists."""

from __future__ import annotations

import base64

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

from panbinder.errors import PanbinderError

from .naming import ImageRef

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


class Registry(LoggingConfigurable):
    url = Unicode(
        "http://127.0.0.1:5000",
        help="Base URL of the registry that caches built images (distribution v2 API).",
    ).tag(config=True)
    username = Unicode("", help="Registry user name (empty: no authentication).").tag(config=True)
    password = Unicode("", help="Registry password or token.").tag(config=True)
    timeout = Float(10.0, help="Seconds before a registry request is abandoned.").tag(config=True)

    @property
    def host(self) -> str:
        """host[:port] as used in image names."""
        return self.url.split("://", 1)[-1].rstrip("/")

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header for this registry (empty without a user name)."""
        if not self.username:
            return {}
        cred = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {cred}"}

    def _headers(self) -> dict[str, str]:
        return {"Accept": MANIFEST_TYPES, **self.auth_headers()}

    async def digest(self, image: ImageRef) -> str | None:
        """The manifest digest of ``image``, or None when the registry does not have it.

        Raises PanbinderError (503): ``registry_unreachable`` when nothing answers (refused,
        reset, timed out) and ``registry_error`` when the registry answers with an error.
        """
        url = f"{self.url.rstrip('/')}/v2/{image.name}/manifests/{image.tag}"
        where = f"registry HEAD {url}"
        req = HTTPRequest(
            url,
            method="HEAD",
            headers=self._headers(),
            request_timeout=self.timeout,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.code == 404:
                return None
            if e.code == 599:  # tornado's code for a timeout or a connection closed mid-answer
                raise unreachable(f"{where}: {e}") from e
            raise PanbinderError(
                "The image registry answered with an error, so this image cannot be looked up; "
                "try again in a few minutes, and tell the operators if it persists.",
                reason="registry_error",
                log_message=f"{where}: {e}",
                status_code=503,
            ) from e
        except OSError as e:
            raise unreachable(f"{where}: {e}") from e
        return resp.headers.get("Docker-Content-Digest", "") or "unknown"

    async def exists(self, image: ImageRef) -> bool:
        return await self.digest(image) is not None

    async def ping(self) -> bool:
        """Whether the registry answers its API root (with our credentials) within ``timeout``."""
        try:
            await AsyncHTTPClient().fetch(
                f"{self.url.rstrip('/')}/v2/", headers=self._headers(), request_timeout=min(self.timeout, 3.0)
            )
        except (HTTPClientError, OSError) as e:
            self.log.warning("registry %s does not answer: %s", self.url, e)
            return False
        return True


def unreachable(log_message: str) -> PanbinderError:
    """Nothing answers at the registry: the user waits; the operators start it again."""
    return PanbinderError(
        "Registry unreachable: the image registry does not answer, so images can be neither "
        "looked up nor built right now; try again in a few minutes, and tell the operators if "
        "it persists.",
        reason="registry_unreachable",
        log_message=log_message,
        status_code=503,
    )
