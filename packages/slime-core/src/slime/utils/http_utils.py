"""slime's ``from slime.utils.http_utils import post``, what slime's generate functions post to the router with."""

import asyncio
from typing import Any

import httpx


async def post(url: str, payload: dict[str, Any] | None, max_retries: int = 60, headers: dict | None = None) -> Any:
    """POST ``payload`` as JSON and return the decoded answer (its text when it is not JSON), retrying a failed
    request once a second up to ``max_retries`` times, as slime does."""
    async with httpx.AsyncClient(timeout=None, trust_env=False) as client:  # the router is local: no proxy
        for attempt in range(1, max_retries + 1):
            try:
                response = await client.post(url, json=payload or {}, headers=headers)
                response.raise_for_status()
            except httpx.HTTPError:
                if attempt == max_retries:
                    raise
                await asyncio.sleep(1)
                continue
            try:
                return response.json()
            except ValueError:
                return response.text
