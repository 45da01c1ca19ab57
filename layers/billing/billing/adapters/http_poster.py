"""Outgoing webhook attempts over HTTP with the standard library (no redirects followed: a
redirected webhook is an endpoint to fix, not a URL to chase)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping

from billing.outgoing_webhooks.delivery import Answer

USER_AGENT = "billing-webhooks/1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class UrllibPoster:
    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Answer:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={**headers, "user-agent": USER_AGENT}
        )
        try:
            with _opener.open(request, timeout=timeout_s) as response:
                response.read(65536)
                return Answer(status=response.status)
        except urllib.error.HTTPError as refused:
            return Answer(status=refused.code, error=f"HTTP {refused.code}")
        except TimeoutError:
            return Answer(status=None, error=f"no answer within {timeout_s:g} s")
        except (urllib.error.URLError, OSError) as failed:
            reason = getattr(failed, "reason", failed)
            if isinstance(reason, TimeoutError):
                return Answer(status=None, error=f"no answer within {timeout_s:g} s")
            return Answer(status=None, error=f"no answer: {reason}")
