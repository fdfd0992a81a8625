"""LiteLLM custom auth hook for tests/gateway.rs (see tests/common/litellm.rs).

LiteLLM keeps virtual keys in PostgreSQL through Prisma, which cannot run offline here. This hook
returns what a key row would hold instead; with `enable_post_custom_auth_checks: true` LiteLLM
then runs its own per-key budget and rate limit checks and refuses with its own code paths.
Fake keys only.
"""

import hashlib
import os

from fastapi import Request
from litellm.proxy._types import ProxyErrorTypes, ProxyException, UserAPIKeyAuth

# A key is `sk-litellm-<kind>` or `sk-litellm-<kind>-<tag>`: each tag is a key of its own (its own
# hash, spend and rate limit window), so that tests sharing one LiteLLM do not share budgets.
KINDS = {
    # $0.002 a request against the stand-in (1000 in + 100 out tokens): the 4th request is refused.
    "budget": dict(
        key_alias="budget",
        model_max_budget={"claude-sonnet-4-5": {"budget_limit": 0.005, "time_period": "1d"}},
    ),
    # Two requests a minute.
    "rpm": dict(key_alias="rpm", rpm_limit=2),
    # No limit: the key a test fails over to.
    "fallback": dict(key_alias="fallback"),
    # A budget mostly spent: LiteLLM sends it in x-litellm-key-spend / x-litellm-key-max-budget
    # (the spend plus the request's own cost) on every answer.
    "headroom": dict(key_alias="headroom", spend=4.02, max_budget=5.0),
}


def spec_of(api_key: str):
    if not api_key.startswith("sk-litellm-"):
        return None
    kind = api_key[len("sk-litellm-"):].split("-", 1)[0]
    return KINDS.get(kind)


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    spec = spec_of(api_key)
    # Which key each request came with, for the tests (the stand-in behind LiteLLM only ever
    # sees LiteLLM's own upstream key). Fake keys only.
    log = os.environ.get("KEYSWITCH_LITELLM_AUTH_LOG")
    if log:
        with open(log, "a") as f:
            f.write(api_key + "\n")
    if spec is None:
        # As LiteLLM refuses a key it does not know (a plain exception here would be a bare 500).
        raise ProxyException(
            message="Authentication Error, invalid api key",
            type=ProxyErrorTypes.auth_error,
            param="api_key",
            code=401,
        )
    return UserAPIKeyAuth(
        api_key=api_key,
        token=hashlib.sha256(api_key.encode()).hexdigest(),
        user_id="user-" + spec["key_alias"],
        **spec,
    )
