"""Raw HTTP for the SDK checks: the headers, bodies and framing the SDKs hide."""

import json
import urllib.error
import urllib.request


def post(url, body, headers):
    """POSTs `body` as JSON; returns (status, headers, text) whatever the status."""
    h = {"content-type": "application/json", **headers}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode()
