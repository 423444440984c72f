"""A small client of an OpenAI-compatible chat API: key-step extraction for the builder, and any chat request
([`KeyStepClient.chat`], e.g. the teacher of ``self-improve --guidance interactive``).

The builder writes the key steps of a selected solution into the ``gpt_response`` field of its rows. The client uses
only the standard
library (``urllib``): one ``POST {api_base}/chat/completions`` per solution, with the API key (when set) from an
environment variable. Connection errors, time-outs, HTTP 429 and 5xx responses and malformed replies are retried
with exponential backoff (``backoff x 2^attempt`` seconds); other HTTP errors (a wrong key, a wrong model name) are
not. After the last attempt a [`KeyStepError`] says why.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = "You extract the key reasoning steps of math solutions. Be faithful and brief."
USER_PROMPT = (
    "Question:\n{question}\n\nSolution:\n{solution}\n\n"
    "List the key steps of this solution as a short numbered list, one line per step, keeping the essential "
    "equations. Do not add steps and do not solve the problem again."
)
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class KeyStepError(RuntimeError):
    """Key-step extraction failed after all attempts."""


def api_key_from_env(env_name: str, purpose: str) -> str | None:
    """The API key in ``$env_name``, or ``None`` with a warning that ``purpose`` requests carry no key (a local
    server needs none)."""
    api_key = os.environ.get(env_name)
    if not api_key:
        logger.warning("$%s is not set: %s requests carry no API key", env_name, purpose)
    return api_key


def chat_completions_url(api_base: str) -> str:
    """``{api_base}/chat/completions`` (an ``api_base`` that already ends with it is kept)."""
    base = api_base.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


@dataclass
class KeyStepClient:
    """A small client of an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        api_base: Base URL, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
        model: Model name sent with each request.
        temperature: Sampling temperature of the API model.
        api_key: Bearer token; ``None`` sends no ``Authorization`` header (local servers).
        max_retries: Attempts after the first one.
        backoff: Seconds before the first retry; doubled at every further retry.
        timeout: Seconds allowed per HTTP request.
        max_tokens: Upper bound on the reply's length.
    """

    api_base: str
    model: str
    temperature: float = 0.0
    api_key: str | None = None
    max_retries: int = 3
    backoff: float = 1.0
    timeout: float = 60.0
    max_tokens: int = 1024

    def messages(self, question: str, solution: str) -> list[dict[str, str]]:
        """The chat messages sent for one solution."""
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT.format(question=question, solution=solution)},
        ]

    def _post(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            chat_completions_url(self.api_base), data=json.dumps(payload).encode("utf-8"), headers=headers
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def extract(self, question: str, solution: str) -> str:
        """The key steps of ``solution`` as the API model writes them.

        Raises:
            KeyStepError: after ``max_retries`` retries, or at once on a non-retryable HTTP error.
        """
        return self.chat(self.messages(question, solution))

    def chat(self, messages: list[dict[str, str]]) -> str:
        """The API model's reply (stripped) to ``messages``, with the retries of the module docstring.

        Raises:
            KeyStepError: after ``max_retries`` retries, or at once on a non-retryable HTTP error.
        """
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                reply = self._post(payload)
                content = reply["choices"][0]["message"]["content"]
                if not isinstance(content, str):
                    raise TypeError(f"message content is {type(content).__name__}, not text")
                return content.strip()
            except urllib.error.HTTPError as err:
                last_error = f"HTTP {err.code} {err.reason}"
                if err.code not in RETRYABLE_STATUS:
                    raise KeyStepError(f"the chat API refused the request: {last_error}") from err
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last_error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            except (ValueError, KeyError, IndexError, TypeError) as err:
                last_error = f"malformed reply: {type(err).__name__}: {err}"
            logger.debug("chat attempt %d failed: %s", attempt + 1, last_error)
        raise KeyStepError(f"chat request failed after {self.max_retries + 1} attempts: {last_error}")
